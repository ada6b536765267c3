"""Faults under traffic: one short round of bench/faults.py, with its verdicts as assertions.

Every fault the bench knows (worker SIGKILL, ingress SIGKILL and restart, broker
SIGSTOP/SIGCONT, a second worker joining and leaving) is injected once while simulated
traffic flows through real processes on a real embedded broker. Nothing resolved may
be lost, nothing acknowledged may be missing from the raw topic, and every contact,
duplicates included, must equal the simulator's expectation.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/faults.py and its harness package

import faults  # noqa: E402
from harness.processes import Children, Machine  # noqa: E402

pytestmark = pytest.mark.integration


def test_kills_pauses_and_rebalances_lose_no_contact_and_no_acknowledged_event(tmp_path):
    options = faults.Options(rounds=1, rate=150, seed=5, pause_min=5, pause_max=6, gap_min=1, gap_max=3,
                             recovery_timeout=90, drain_timeout=120)
    children = Children()
    try:
        report = asyncio.run(faults.run(options, Machine(tmp_path, children, None, None)))
    finally:
        children.stop_all()
    faults.print_report(report)  # shown by pytest when the test fails
    compared = report.comparison
    assert sorted(f.name for f in report.faults) == ["broker-pause", "ingress-kill", "worker-join",
                                                     "worker-kill", "worker-leave"]
    assert all(f.recovery is not None for f in report.faults), f"a fault did not recover (logs in {tmp_path})"
    assert compared["expected"] > 100 and report.accepted > 1000, "too little traffic to prove anything"
    assert not compared["lost"], f"contacts lost: {compared['lost'][:5]} (logs in {tmp_path})"
    assert not compared["unexpected"], f"unexpected contacts: {compared['unexpected'][:5]} (logs in {tmp_path})"
    assert not compared["differing"], f"contacts unlike the expectation: {compared['differing'][:5]}"
    assert not report.missing_raw, f"events answered 202 but not on the raw topic: {report.missing_raw[:5]}"
    leaked = [path.name for path in tmp_path.glob("*.log") if "fsk_" in path.read_text(errors="replace")]
    assert not leaked, f"an ingress key reached {leaked}"
