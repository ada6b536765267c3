"""Benchmark: the stream worker's memory per open chat, next to the size of the state it holds.

A fresh worker's RSS (VmRSS) once ready and idle, then again after it applied
--open-chats chats of 2 events each (a user message and an assignment; no resolution),
both once RSS stops moving; the difference per chat, next to the size of the serialised
state per chat (ChatState.dumps(), and its key). Goal: < 1 KiB per open chat with the
memory store.

With --compare-with REF, REF (checked out in a temporary git worktree, as
bench/throughput.py does) is measured first on its own topics and app id, and both
workers' bytes per open chat are printed side by side (REF's serialised state size is not
measured: this script imports only the current tree).

Run it from the repository root (a few minutes with the defaults):

    .venv/bin/python bench/memory.py [--open-chats 100000] [--partitions 6] [--compare-with REF]

bench/stream.py runs this with the throughput and recovery figures (there
--compare-memory asks for REF's memory). Exit status: 0 unless a step failed or timed out
(1; a missed goal is reported, not a failure), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from harness import stream_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_figures.add_options(parser, "--open-chats", "--partitions", "--compare-with",
                               compare_with="a git ref (HEAD~3, a hash): also measure that commit's worker "
                                            "(temporary worktree)")
    args = parser.parse_args(argv)
    options = stream_figures.options_from(parser, args, ("memory",), compare_memory=args.compare_with is not None)
    return stream_figures.main("bench/memory.py", "worker memory", options)


if __name__ == "__main__":
    sys.exit(main())
