"""What the benchmarks in bench/ share; each benchmark is a short script beside this package.

How it is imported: a benchmark is run as a file from the repository root,
`.venv/bin/python bench/NAME.py`, so Python itself puts bench/ first on sys.path and the
script imports `harness` with no path edits of its own. Importing this package puts the
work tree (the repository root this file lives in) first on sys.path, once, here: the
benchmarks measure this checkout's `connectors` and `streams` (and use its `tests`
payloads), whatever else is installed. Child processes the harness starts itself
(`python -m harness.ceiling`, `python -m harness.contact_watch`) run with bench/ as their
working directory, which `python -m` puts on their sys.path. tests/pipeline/test_faults.py
puts bench/ on its sys.path to run bench/faults.py briefly.

- processes.py  child processes: the embedded broker, services (worker, ingress) with their
                /readyz, /metrics and memory, CPU pinning, and the `main` every script shares
- load.py       the chats a stream benchmark feeds: native Freshchat webhooks, enveloped as
                the ingress does
- topics.py     Kafka: producing a load, reading a topic's contacts (or interval statistics) and its end
- report.py     the summary table: each figure next to its baseline measured in the same run
- ref.py        another commit (--compare-with REF) checked out in a temporary git worktree
- stream_figures.py  the stream worker's figures (throughput, with interval statistics on and
                off; memory per open chat; restart), run by bench/stream.py, throughput.py,
                memory.py and recovery.py
- ceiling.py    the plain aiokafka loop the worker's throughput is compared with (a child)
- pipeline.py   broker, ingress, workers and a contact watcher with the simulator's truth
                (bench/soak.py, bench/faults.py)
- contact_watch.py  the separate consumer that times when each contact appears (a child)
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # bench/: the working directory of `python -m harness.*` children
WORK_TREE = BENCH.parent  # the repository root whose packages are measured

if sys.path[:1] != [str(WORK_TREE)]:
    sys.path.insert(0, str(WORK_TREE))
