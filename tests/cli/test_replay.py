"""Replay rebuilds exactly the live contacts of a window, and a second replay writes nothing."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from connectors.freshchat.feed import publish_group_names
from connectors.replay import ReplayWindow, replay
from connectors.simulation.poster import post_scenario
from connectors.simulation.scenario import GROUPS, build_scenario
from streams.domain.times import parse_time
from tests.kafka_records import read_topic, values
from tests.processes import settings_env

pytestmark = pytest.mark.integration


def without_emitted(contacts):
    return sorted(({k: v for k, v in c.items() if k != "emitted_at"} for c in contacts), key=lambda c: c["contact_id"])


def test_replay_into_an_empty_topic_gives_the_window_and_is_idempotent(loop_thread, settings, ingress,
                                                                        add_integration, worker):
    key = add_integration("acme")
    loop_thread.run(publish_group_names(settings, "acme", GROUPS))
    scenario = build_scenario("acme", 300, seed=3)
    loop_thread.run(post_scenario(ingress.url, "acme", key, scenario, concurrency=32), timeout=120)
    live = values(loop_thread.run(read_topic(settings, settings.contacts_topic, len(scenario.expected), timeout=60)))
    assert len(live) == len(scenario.expected)

    resolved = sorted(parse_time(c["resolved_at"]) for c in live)
    since = resolved[len(resolved) // 2]
    window = ReplayWindow(since=since, until=resolved[-1] + 1)
    in_window = [c for c in live if since <= parse_time(c["resolved_at"])]
    assert any(parse_time(c["started_at"]) < since for c in in_window), "no chat straddles the window start"

    target = settings.contacts_topic + "-replay"
    first = loop_thread.run(replay(settings, window, target), timeout=120)
    replayed = values(loop_thread.run(read_topic(settings, target, len(in_window) + 1, timeout=5)))
    assert (first.rebuilt, first.missing, first.present, first.differing) == (len(in_window), len(in_window), 0, 0)
    assert without_emitted(replayed) == without_emitted(in_window)

    second = loop_thread.run(replay(settings, window, target), timeout=120)
    assert second.counts() == {"rebuilt": len(in_window), "present": len(in_window), "missing": 0, "differing": 0,
                               "retracted": 0}
    assert len(loop_thread.run(read_topic(settings, target, len(in_window) + 1, timeout=3))) == len(in_window)

    live_check = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "replay", "--since", in_window[0]["resolved_at"], "--dry-run", "--json"],
        env=settings_env(settings), capture_output=True, text=True, timeout=120)
    report = orjson.loads(live_check.stdout)
    assert report["missing"] == 0 and report["differing"] == 0 and report["present"] == report["rebuilt"] > 0


def test_replay_with_jobs_gives_what_one_process_gives(loop_thread, settings, ingress, add_integration):
    """--jobs 2 folds the 3 raw partitions in 2 processes; report and contacts are those of --jobs 1,
    including those of a group whose name the groups topic does not give (parked, then released)."""
    key = add_integration("acme")
    loop_thread.run(publish_group_names(settings, "acme", GROUPS[1:]))  # the first group's name is unknown
    scenario = build_scenario("acme", 120, seed=5)
    loop_thread.run(post_scenario(ingress.url, "acme", key, scenario, concurrency=16), timeout=120)
    window = ReplayWindow(since=0, until=2**62)

    one = loop_thread.run(replay(settings, window, settings.contacts_topic + "-jobs1"), timeout=120)
    two = loop_thread.run(replay(settings, window, settings.contacts_topic + "-jobs2", jobs=2), timeout=120)
    assert one.counts() == two.counts() and one.rebuilt > 0
    assert (one.raw_first, one.raw_last) == (two.raw_first, two.raw_last)
    first = values(loop_thread.run(read_topic(settings, settings.contacts_topic + "-jobs1", 10**6, timeout=3)))
    second = values(loop_thread.run(read_topic(settings, settings.contacts_topic + "-jobs2", 10**6, timeout=3)))
    assert without_emitted(first) == without_emitted(second) and len(first) == one.missing

    cli = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "replay", "--since", "2000-01-01T00:00:00Z", "--to",
         settings.contacts_topic + "-jobs2", "--jobs", "3", "--dry-run", "--json"],
        env=settings_env(settings), capture_output=True, text=True, timeout=120)
    assert orjson.loads(cli.stdout) == {**one.counts(), "present": one.rebuilt, "missing": 0}, cli.stderr
