"""The embedded broker's integrations mirror keeps a removal across a restart."""

from __future__ import annotations

from types import SimpleNamespace

from connectors.kafka.broker import EmbeddedBroker, latest_records


def test_a_tombstone_in_the_mirror_keeps_a_removed_integration_out(tmp_path):
    mirror = SimpleNamespace(mirror_path=tmp_path / "integrations.jsonl")
    record = lambda key, value: SimpleNamespace(key=key, value=value)  # noqa: E731
    EmbeddedBroker._append(mirror, [record(b"acme", b'{"id":"acme"}'), record(b"beta", b'{"id":"beta"}')])
    EmbeddedBroker._append(mirror, [record(b"acme", None)])
    assert latest_records(mirror.mirror_path.read_text()) == {"beta": '{"id":"beta"}'}
    EmbeddedBroker._append(mirror, [record(b"acme", b'{"id":"acme","v":2}')])
    assert latest_records(mirror.mirror_path.read_text())["acme"] == '{"id":"acme","v":2}'
