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
