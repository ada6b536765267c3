"""A separate consumer of the contacts topic for the soak and fault benches: when did each contact appear?

Why a process of its own: the bench's own process posts hundreds of requests a second,
and a contact read on that busy event loop would be timed late by however long the
loop was busy. Here nothing else runs, so the wall-clock time written next to each
record is when a plain consumer could first see it.

    python -m harness.contact_watch BOOTSTRAP TOPIC OUTFILE    (working directory bench/)

Appends one line per record to OUTFILE: `<unix time read>\\t<the record's value>`,
flushed after every fetch. It reads from the beginning of every partition, follows new
partitions, and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from aiokafka import TopicPartition

from connectors.kafka.clients import make_consumer
from streams.settings import Settings


async def watch(bootstrap: str, topic: str, out: Path, stop: asyncio.Event) -> None:
    consumer = make_consumer(Settings(kafka_bootstrap=bootstrap), fetch_max_wait_ms=20)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        with open(out, "ab") as sink:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                read = f"{time.time():.6f}\t".encode()
                lines = [read + record.value + b"\n" for records in batches.values() for record in records]
                if lines:
                    sink.writelines(lines)
                    sink.flush()
    finally:
        await consumer.stop()


def main(argv: list[str]) -> int:
    bootstrap, topic, out = argv

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await watch(bootstrap, topic, Path(out), stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
