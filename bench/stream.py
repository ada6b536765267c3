"""Benchmark: the stream worker next to a plain aiokafka loop, per open chat, and at restart.

Why: per-event overhead, not Kafka, bounds a Python stream processor (a plain consume →
dict → produce loop ran ~145k events/s on this kind of machine, a naive Faust agent with a
table ~4.3k/s). This script shows where the worker stands, measured next to baselines
taken in the same run, so the ratios mean something on a shared, noisy machine. It runs
the three figures one after another, on one embedded broker; each also has a script of
its own, whose docstring says how it is measured:

1. throughput (bench/throughput.py): worker events/s next to the plain loop's and a Quix
   Streams app's doing the same work (needs `.venv/bin/pip install -e '.[bench]'`, else left
   out) on the same pre-loaded topic, and changelog records per event; exactly `chats`
   contacts, equal in every run but for `emitted_at`. Interval statistics on (the
   headline) next to off: goal >= 90%, and the latest revisions sum to `chats`. With
   --compare-with REF, also REF's worker (current / REF, goal >= 90%).
2. memory (bench/memory.py): a worker's RSS per open chat after --open-chats chats of 2
   events, next to the serialised state per chat; goal < 1 KiB. --compare-memory adds REF's.
3. recovery (bench/recovery.py): that worker restarted on the same app id, start → ready,
   next to a worker on an empty changelog; goal < 10 s, and the sampled open chats' state
   survived.

It starts everything itself (an embedded broker on a free port with a temporary data
dir, unique topic names and app ids, each worker in its own temporary working directory)
and stops every child on exit, error, Ctrl-C or SIGTERM. With 2+ CPUs the measured
process (ceiling loop or worker) is pinned to one CPU and the broker and this script to
the others.

Run it from the repository root (takes a few minutes with the defaults):

    .venv/bin/python bench/stream.py [--chats 20000] [--events-per-chat 10]
        [--open-chats 100000] [--partitions 6] [--skip-memory]
        [--compare-with REF [--compare-memory]] [--repeats N]

--skip-memory skips figures 2 and 3. Exit status: 0 when every correctness check passed
(goals missed are reported, not failures), 1 when one failed or a step timed out, 130 on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from harness import stream_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_figures.add_options(parser, "--chats", "--events-per-chat", "--open-chats", "--skip-memory",
                               "--partitions", "--compare-with", "--compare-memory", "--repeats")
    args = parser.parse_args(argv)
    figures = ("throughput",) if args.skip_memory else stream_figures.FIGURES
    return stream_figures.main("bench/stream.py", "stream", stream_figures.options_from(parser, args, figures))


if __name__ == "__main__":
    sys.exit(main())
