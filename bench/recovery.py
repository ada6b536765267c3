"""Benchmark: how long the stream worker takes to restart holding open chats, next to an empty start.

A worker is filled with --open-chats chats of 2 events each (no resolution) as
bench/memory.py does (its lines are printed on the way), then stopped with SIGTERM, and a
new one is started on the same topics and app id: start → /readyz 200 (only after table
recovery), next to the same for a worker with an empty changelog (fresh app id). A sample
of the open chats (up to 1,000) is then resolved to prove their state survived: each
contact must count the user message sent before the restart. Goal: recovering 100,000
chats < 10 s.

Run it from the repository root (a few minutes with the defaults):

    .venv/bin/python bench/recovery.py [--open-chats 100000] [--partitions 6]

bench/stream.py runs this with the throughput and memory figures, on the worker its
memory figure filled. Exit status: 0 when the sampled state survived (a missed goal is
reported, not a failure), 1 when it did not or a step timed out, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from harness import stream_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_figures.add_options(parser, "--open-chats", "--partitions")
    options = stream_figures.options_from(parser, parser.parse_args(argv), ("recovery",))
    return stream_figures.main("bench/recovery.py", "worker recovery", options)


if __name__ == "__main__":
    sys.exit(main())
