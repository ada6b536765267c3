"""Benchmark: the stream worker's events/s next to a plain aiokafka loop's and Quix Streams', on the same pre-loaded topic.

N = chats × events-per-chat raw envelopes (native Freshchat webhooks: a user message, an
assignment to a group, bot/agent/user messages, a private note, a resolution; chats
interleaved in event-time order) are pre-loaded into a fresh raw topic, keyed and
enveloped exactly as the ingress does, and the group names are put on the groups topic
first. Three subjects read that same topic, each in turn pinned to the same CPU (the
broker and this script on the other), each with its own consumer group and contacts topic:

- the ceiling, a plain aiokafka loop (harness/ceiling.py): read, orjson-decode, a small
  dict per chat, one JSON contact per resolution, acks awaited; timed from the first record
  read to the last contact acknowledged; once;
- Quix Streams doing the worker's job (harness/quix_app.py, needs the bench extra:
  `.venv/bin/pip install -e '.[bench]'`), two apps (--quix-app lean|processor|both, default
  both): the lean app, the subject of worker / Quix, calls freshstream's domain functions
  per record (normalise_or_skip, apply, queue_for, revision_plan, build_contact; the
  ChatState's dumps() bytes in Quix's State); the processor app runs freshstream's whole
  ContactProcessor on a batch of one record (the same metrics and write-ahead marks), its
  figures printed beside. Both: Quix's RocksDB State with its changelog, at-least-once,
  commit interval 1 s, idempotence off (the embedded broker has no idempotent producer),
  librdkafka's fetch defaults; the group names read from the groups topic once at start;
  timed from the first record to the `emitted_at` of the last contact;
- the worker (`python -m connectors.cli worker`, whatever this tree's is), timed from the
  moment its /readyz turns 200 (partitions assigned, reading starts) to the `emitted_at` of
  its last contact (intervals off) or to its statistics complete (on, below).

With --repeats N they alternate (Quix lean, Quix processor, off, on, then on, off, Quix
processor, Quix lean, ...) and medians are compared. Without quixstreams installed the Quix runs are left out and its rows say "not
measured". Goals (issue 14): worker (intervals off: the same work as Quix and the ceiling)
/ Quix >= 1.5, worker / ceiling >= 0.30; changelog records per event <= 0.15 for the
worker: after each run (the worker stopped, Quix's last checkpoint committed) the records
on its changelog topics (the worker's `<app id>-<table>-changelog`, Quix's
`changelog__<group>--...`) are counted from fetch high watermarks and divided by the
events. Exactly `chats` contacts from each run, and every run's final contacts equal the
first run's in every field but `emitted_at`. A contact counts once per contact_id, at its
highest `revision` (of equal ones the later `emitted_at`) unless that record is
`retracted`; records without the fields count as revision 1, not retracted, so a worker
that revises contacts and one that does not are checked alike.

Interval statistics on and off: the current worker runs with them on (the default; its
figure is the headline above) and off (FRESHSTREAM_INTERVALS_ENABLED=off), alternating
(in the order above), each run with its own app id, contacts topic and
intervals topic. Off is timed as above, to the last contact's `emitted_at`; on, to the
moment the statistics are complete: the last `updated_at` read on the intervals topic when
the latest revision per interval sums to exactly `chats` contacts (checked again at the
topic's end). Goal: on / off events/s >= 90% (medians), "interval maintenance costs at most
10%". The on runs also print their rate to the last contact.

Comparing with an earlier commit (--compare-with REF): REF is checked out into a
temporary `git worktree add --detach` (removed on exit, error or Ctrl-C) and its worker
runs as an extra subject: the same pre-loaded topic, settings, CPU pinning and .venv
interpreter, its own app id, consumer group and contacts topic (REF may keep its state in
another format), and PYTHONPATH pointing at the worktree. REF runs with its own defaults
and is timed to its last contact (a tree from before interval statistics ignores the
setting). With --repeats N the subjects run REF, Quix, off, on, REF, on, off, Quix, ... (N each, so none
always gets the warmer or the fuller broker) and the medians are compared: current
(intervals on) / REF events/s, goal >= 90%. "Current" is the repository's working tree,
uncommitted edits included.

Run it from the repository root (a few minutes with the defaults):

    .venv/bin/python bench/throughput.py [--chats 20000] [--events-per-chat 10] [--partitions 6]
        [--compare-with REF] [--repeats N] [--quix-app lean|processor|both]

bench/stream.py runs this with the memory and recovery figures. Exit status: 0 when the
contacts check passed (a missed goal is reported, not a failure), 1 when it failed or a
step timed out, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from harness import stream_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_figures.add_options(parser, "--chats", "--events-per-chat", "--partitions", "--compare-with",
                               "--repeats", "--quix-app")
    options = stream_figures.options_from(parser, parser.parse_args(argv), ("throughput",))
    return stream_figures.main("bench/throughput.py", "worker throughput", options)


if __name__ == "__main__":
    sys.exit(main())
