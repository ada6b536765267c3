"""`freshstream deliver injixo`: the contacts topic into injixo's contact-events API, exactly once in effect.

The sink reads the contacts topic in its own consumer group, so it restarts and scales apart
from the worker. What it delivered lives on the compacted delivery state topic, in the same
partition as the contacts it is about (streams/domain/delivery.py says why that is the unit):

1. a contact waits until it went `--settle` seconds without a revision;
2. a batch of settled contacts of one integration and partition is written down there (an
   intent), then posted with its idempotency key;
3. after injixo's 2xx each contact's delivered row is written there, and the intent tombstoned;
4. the partition's offset is committed up to the first contact not delivered yet.

A partition assigned to the sink is first read back from the state topic; an intent without
its tombstone is posted again as it was. Each integration posts through its own lane, one
batch at a time, so one integration's failing key or slow answers do not hold up another's.
A revocation waits for a request in the air, then leaves its batch to the partition's next
owner, who finds the intent and posts it again under the same key.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from connectors.backoff import backoff_delay
from connectors.delivery.injixo_api import Answer, post_batch
from connectors.delivery.web import SinkWeb
from connectors.integrations.health import HealthPublisher, instance_name
from connectors.integrations.records import Integration, decrypt_injixo_key, load_cipher
from connectors.integrations.registry import IntegrationRegistry
from connectors.kafka.clients import make_consumer, make_producer
from connectors.kafka.topics import true_ends
from connectors.service import Service
from streams.domain.delivery import Batch, Ledger
from streams.domain.integration_health import health_key
from streams.domain.keys import split_contact_key, split_delivery_line_key
from streams.domain.times import ms_to_time, utc_now_text
from streams.metrics import CallbackGauge, MetricSet
from streams.settings import Settings

__all__ = ["InjixoSink"]

logger = logging.getLogger(__name__)

TICK_S = 0.2  # how often an idle lane looks again (for settled contacts, a replaced key)


class DeliveryMetrics(MetricSet):
    """The sink's own page: requests by answer, rows posted, contacts delivered, and what waits."""

    def __init__(self, sink: "InjixoSink") -> None:
        super().__init__()
        self.requests = Counter("freshstream_deliver_requests_total",
                                "Requests to injixo by integration and answer (HTTP status, or 'error').",
                                ["integration", "status"], registry=self.registry)
        self.rows = Counter("freshstream_deliver_rows_total",
                            "Contact rows injixo took, by integration and sign (negative: a correction).",
                            ["integration", "sign"], registry=self.registry)
        self.contacts = Counter("freshstream_deliver_contacts_total",
                                "Contact revisions delivered (a row posted, or nothing to post), by integration.",
                                ["integration"], registry=self.registry)
        self.add(CallbackGauge("freshstream_deliver_backlog_contacts",
                               "Contacts this sink read but has not delivered yet, settling included.",
                               lambda: [({"integration": i}, n) for i, (n, _) in sink.backlog().items()]))
        self.add(CallbackGauge("freshstream_deliver_stopped",
                               "1 while posting for an integration is stopped by a 401/403 until its key is replaced.",
                               lambda: [({"integration": i}, int(lane.stopped_on is not None))
                                        for i, lane in sink.lanes.items()]))


class Lane:
    """One integration's posting: at most one batch at a time, its retries, and what health shows."""

    def __init__(self, integration: str) -> None:
        self.integration = integration
        self.batch: Batch | None = None
        self.intent_written = False
        self.recovered: list[Batch] = []  # intents found on assignment, posted again first
        self.attempt = 0
        self.retry_at = 0.0
        self.stopped_on: tuple | None = None  # (configuration id, encrypted key) injixo refused with 401/403
        self.lock = asyncio.Lock()  # held while a request is in the air and its result recorded
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.state = "ok"
        self.delivered = 0
        self.last_delivered_at: str | None = None
        self.last_delivered_contact: str | None = None
        self.last_failure: Answer | None = None
        self.last_failure_at: str | None = None


class InjixoSink(Service):
    """The consumer, the ledgers of the partitions it holds, one lane per integration, health and probes."""

    def __init__(self, settings: Settings, web_port: int | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.registry = self.add_dependency(IntegrationRegistry(settings))
        self.metrics = DeliveryMetrics(self)
        self.web = self.add_dependency(SinkWeb("injixo", web_port, self.metrics, self.readiness))
        self.ledgers: dict[int, Ledger] = {}
        self.lanes: dict[str, Lane] = {}
        self.instance = ""
        self._consumer = self._producer = self._http = self._publisher = self._reader = None
        self._cipher = None
        self._committed: dict[int, int] = {}
        self._assigned = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._cipher = load_cipher(self.settings)
        self._producer = await self.add_async_context(make_producer(self.settings))
        self._http = await self.add_async_context(httpx.AsyncClient(timeout=self.settings.delivery_timeout_seconds))
        await self.registry.maybe_start()
        await asyncio.wait_for(self.registry.loaded.wait(), self.settings.broker_wait_seconds)
        await self.web.maybe_start()
        self.instance = instance_name(self.settings, "deliver-injixo", self.web.port)
        self._publisher = self.add_dependency(HealthPublisher(self.settings, self._producer, [self.health_records]))
        self._consumer = make_consumer(self.settings, group_id=f"{self.settings.delivery_app_id}-injixo",
                                       session_timeout_ms=6_000, heartbeat_interval_ms=1_000,
                                       fetch_max_wait_ms=200)
        await self._consumer.start()
        self._consumer.subscribe([self.settings.contacts_topic], listener=_Rebalance(self))
        self._reader = asyncio.get_running_loop().create_task(self._consume(), name="deliver-injixo-reader")
        configured = [i.id for i in self.registry.all() if i.delivers_to_injixo]
        logger.info("deliver injixo: posting to %s for %s", self.settings.injixo_url,
                    ", ".join(configured) if configured else "no integration yet (run 'freshstream integrations "
                                                             "set-delivery NAME …')")

    async def on_stop(self) -> None:
        """The reader and the lanes end first, so the last commit covers everything they finished."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        for lane in self.lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self.lanes.values() if lane.task), return_exceptions=True)
        if self._consumer is not None:
            try:
                await self._commit()
            except (KafkaError, OSError) as exc:
                logger.warning("offsets not committed at shutdown (%s); a restart re-reads them, and delivers "
                               "nothing twice", type(exc).__name__)
            await self._consumer.stop()
            self._consumer = None

    async def on_shutdown(self) -> None:
        if self._publisher is not None:
            await self.remove_dependency(self._publisher)
            self._publisher = None

    def readiness(self) -> tuple[bool, str]:
        if not self.registry.loaded.is_set():
            return False, "integrations not loaded yet"
        if not self._assigned:
            return False, "waiting for a partition assignment of the contacts topic"
        return True, f"holding {len(self.ledgers)} partition(s)"

    # -- reading contacts --------------------------------------------------------------------

    async def _consume(self) -> None:
        last_commit = 0.0
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as exc:
                logger.warning("reading %s failed (%s); retrying", self.settings.contacts_topic, exc)
                await asyncio.sleep(1)
                continue
            waiting: set[str] = set()
            for tp, records in batches.items():
                ledger = self.ledgers.get(tp.partition)
                if ledger is None:  # fetched while its delivery state is still being read: read it again later
                    self._consumer.seek(tp, records[0].offset)
                    continue
                waiting |= self._observe(ledger, records)
            for integration in waiting:
                self._lane(integration).wake.set()
            if time.monotonic() - last_commit >= 1.0:
                last_commit = time.monotonic()
                try:
                    await self._commit()
                except (KafkaError, OSError) as exc:
                    logger.warning("committing offsets failed (%s); retrying", type(exc).__name__)

    def _observe(self, ledger: Ledger, records) -> set[str]:
        """Hand records to the ledger; returns the integrations that now have contacts waiting."""
        attribution, waiting = self.settings.interval_attribution, set()
        for record in records:
            integration, _ = split_contact_key(record.key)
            known = self.registry.get(integration)
            if known is None or not known.delivers_to_injixo:
                ledger.skip(record.offset)
                continue
            try:
                contact = orjson.loads(record.value)
                if not isinstance(contact.get("contact_id"), str):
                    raise ValueError("no contact_id")
                if ledger.observe(record.offset, record.key, contact, attribution):
                    waiting.add(integration)
            except (orjson.JSONDecodeError, ValueError, AttributeError, TypeError) as exc:
                logger.warning("skipped %s[%d]@%d: not a contact (%s)", record.topic, record.partition,
                               record.offset, exc)
                ledger.skip(record.offset)
        return waiting

    async def _commit(self, partitions=None) -> None:
        offsets = {}
        for partition, ledger in list(self.ledgers.items()):
            if partitions is not None and partition not in partitions:
                continue
            point = ledger.commit_point()
            if point is not None and point != self._committed.get(partition):
                offsets[TopicPartition(self.settings.contacts_topic, partition)] = point
        if offsets:
            await self._consumer.commit(offsets)
            self._committed.update({tp.partition: offset for tp, offset in offsets.items()})

    # -- assignment --------------------------------------------------------------------------

    async def assigned(self, partitions: set[int]) -> None:
        """Read each new partition's delivery state back before any of its contacts is read.

        It retries until it succeeds: the consumer fetches a partition as soon as this returns, and a
        partition read without its state would post again what was delivered before."""
        for partition in sorted(partitions - set(self.ledgers)):
            ledger = Ledger(partition)
            for attempt in range(1_000_000):
                try:
                    records = await self._read_state(partition)
                    break
                except (KafkaError, OSError, TimeoutError) as exc:
                    logger.warning("reading the delivery state of partition %d failed (%s); retrying", partition,
                                   type(exc).__name__)
                    await asyncio.sleep(backoff_delay(attempt))
            for key, value in records:
                ledger.restore(key, value)
            again, done = ledger.unfinished()
            for batch in done:  # delivered and recorded; only the intent's tombstone was lost
                key, value = batch.delivered()[-1]
                await self._producer.send_and_wait(self.settings.delivery_state_topic, value, key=key,
                                                   partition=partition)
            for batch in again:
                logger.warning("deliver injixo: a batch of %d row(s) for %s was posted before a restart or "
                               "rebalance without its answer being recorded; posting it again under the same "
                               "idempotency key", len(batch.rows), batch.integration)
                self._lane(batch.integration).recovered.append(batch)
                self._lane(batch.integration).wake.set()
            self.ledgers[partition] = ledger
            self._committed.pop(partition, None)
        self._assigned = True

    async def revoked(self, partitions: set[int]) -> None:
        """Wait for requests in the air on these partitions, commit, and let their batches go."""
        for lane in self.lanes.values():
            holds = (lane.batch is not None and lane.batch.partition in partitions)
            if holds:
                async with lane.lock:
                    if lane.batch is not None and lane.batch.partition in partitions:
                        lane.batch, lane.intent_written = None, False
            lane.recovered = [b for b in lane.recovered if b.partition not in partitions]
        try:
            await self._commit(partitions)
        except (KafkaError, OSError) as exc:
            logger.warning("offsets of revoked partitions not committed (%s); their next owner re-reads them "
                           "and delivers nothing twice", type(exc).__name__)
        for partition in partitions:
            self.ledgers.pop(partition, None)
            self._committed.pop(partition, None)

    async def _read_state(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        tp = TopicPartition(self.settings.delivery_state_topic, partition)
        consumer = make_consumer(self.settings, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await true_ends(consumer, [tp]))[tp]
            await consumer.seek_to_beginning(tp)
            records = []
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                    records.extend((r.key, r.value) for r in batch)
            return records
        finally:
            await consumer.stop()

    # -- posting -----------------------------------------------------------------------------

    def _lane(self, integration: str) -> Lane:
        lane = self.lanes.get(integration)
        if lane is None:
            lane = self.lanes[integration] = Lane(integration)
            lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane), name=f"lane-{integration}")
        return lane

    async def _run_lane(self, lane: Lane) -> None:
        while True:
            try:
                await self._lane_step(lane)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                logger.warning("deliver injixo: writing delivery state for %s failed (%s); retrying",
                               lane.integration, type(exc).__name__)
                await asyncio.sleep(1)

    async def _lane_step(self, lane: Lane) -> None:
        integration = self.registry.get(lane.integration)
        if integration is None or not integration.delivers_to_injixo:
            await self._idle(lane)
            return
        if lane.stopped_on is not None:
            if lane.stopped_on == (integration.injixo_configuration_id, integration.injixo_api_key_enc):
                await self._idle(lane)
                return
            logger.info("deliver injixo: %s has a new key or configuration id; posting again", lane.integration)
            lane.stopped_on, lane.attempt, lane.retry_at = None, 0, 0.0
        if lane.batch is None:
            lane.batch, lane.intent_written = self._next_batch(lane, integration)
            if lane.batch is None:
                await self._idle(lane)
                return
        wait = lane.retry_at - time.monotonic()
        if wait > 0:
            await self._idle(lane, min(wait, 1.0))
            return
        async with lane.lock:
            batch = lane.batch
            if batch is None:  # let go by a revocation while this lane waited for the lock
                return
            if not lane.intent_written:
                key, value = batch.intent()
                await self._producer.send_and_wait(self.settings.delivery_state_topic, value, key=key,
                                                   partition=batch.partition)
                lane.intent_written = True
            api_key = decrypt_injixo_key(self._cipher, integration)
            answer = await post_batch(self._http, self.settings.injixo_url, api_key, batch)
            self.metrics.requests.labels(lane.integration, str(answer.status or "error")).inc()
            if answer.kind == "delivered":
                await self._record_delivered(lane, batch)
                return
        await self._failed(lane, integration, answer)

    def _next_batch(self, lane: Lane, integration: Integration) -> tuple[Batch | None, bool]:
        """The batch to post next, and whether its intent is on the state topic already (a recovered one)."""
        if lane.recovered:
            return lane.recovered.pop(0), True
        now_ms = int(time.time() * 1000)
        settle_ms = int(self.settings.delivery_settle_seconds * 1000)
        linger_ms = int(self.settings.delivery_linger_seconds * 1000)
        size = self.settings.delivery_batch_size
        for ledger in self.ledgers.values():
            lines = ledger.settled(lane.integration, now_ms, settle_ms, size)
            if not lines:
                continue
            oldest = min(ledger.pending[line].emitted_ms for line in lines) + settle_ms
            if len(lines) < size and now_ms < oldest + linger_ms:
                continue
            batch = ledger.take(lane.integration, integration.injixo_configuration_id, lines, size)
            if batch is not None:
                return batch, False
        return None, False

    async def _record_delivered(self, lane: Lane, batch: Batch) -> None:
        futures = [await self._producer.send(self.settings.delivery_state_topic, value, key=key,
                                             partition=batch.partition) for key, value in batch.delivered()]
        await asyncio.gather(*futures)
        ledger = self.ledgers.get(batch.partition)
        if ledger is not None:
            ledger.complete(batch)
        lane.batch, lane.intent_written, lane.attempt, lane.retry_at = None, False, 0, 0.0
        positive = sum(1 for row in batch.rows if row.offered >= 0 and row.handled >= 0 and row.duration_ms >= 0)
        self.metrics.rows.labels(lane.integration, "positive").inc(positive)
        self.metrics.rows.labels(lane.integration, "negative").inc(len(batch.rows) - positive)
        self.metrics.contacts.labels(lane.integration).inc(len(batch.changes))
        lane.delivered += len(batch.changes)
        lane.last_delivered_at = utc_now_text()
        lane.last_delivered_contact = split_delivery_line_key(batch.changes[-1].line)[1]
        if lane.state != "ok":
            logger.info("deliver injixo: %s delivers again", lane.integration)
            lane.state = "ok"
            await self._publish_now()

    async def _failed(self, lane: Lane, integration: Integration, answer: Answer) -> None:
        changed = lane.state == "ok" or (lane.last_failure and lane.last_failure.status != answer.status)
        lane.last_failure, lane.last_failure_at = answer, utc_now_text()
        if answer.kind == "stop":
            lane.stopped_on = (integration.injixo_configuration_id, integration.injixo_api_key_enc)
            lane.state = "stopped"
            logger.warning("deliver injixo: %s for %s; posting for it stops until the key is replaced with "
                           "'freshstream integrations set-delivery %s …'", answer.error, lane.integration,
                           lane.integration)
        else:
            lane.state = "failing"
            delay = answer.retry_after if answer.retry_after is not None else backoff_delay(lane.attempt)
            lane.attempt += 1
            lane.retry_at = time.monotonic() + delay
            if changed:
                logger.warning("deliver injixo: %s for %s; retrying with backoff", answer.error, lane.integration)
        await self._publish_now()

    async def _idle(self, lane: Lane, seconds: float = TICK_S) -> None:
        lane.wake.clear()
        try:
            await asyncio.wait_for(lane.wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    # -- health ------------------------------------------------------------------------------

    def backlog(self) -> dict[str, tuple[int, int | None]]:
        """Per integration: contacts read but not delivered, and the emitted_at ms of the oldest."""
        total: dict[str, tuple[int, int | None]] = {}
        for ledger in self.ledgers.values():
            for integration, (count, oldest) in ledger.backlog().items():
                known_count, known_oldest = total.get(integration, (0, None))
                total[integration] = (known_count + count, oldest if known_oldest is None
                                      else known_oldest if oldest is None else min(oldest, known_oldest))
        return total

    def health_records(self) -> list[tuple[bytes, bytes]]:
        """One record per configured integration, every publish: the backlog moves all the time."""
        backlog = self.backlog()
        records = []
        for integration in self.registry.all():
            if not integration.delivers_to_injixo:
                continue
            lane = self.lanes.get(integration.id) or Lane(integration.id)
            count, oldest = backlog.get(integration.id, (0, None))
            failure = lane.last_failure
            records.append((health_key(integration.id, "delivery", self.instance), orjson.dumps({
                "v": 1, "integration": integration.id, "source": "delivery", "instance": self.instance,
                "sink": "injixo", "published_at": utc_now_text(), "state": lane.state,
                "url": self.settings.injixo_url,
                "last_delivered_at": lane.last_delivered_at, "last_delivered_contact": lane.last_delivered_contact,
                "delivered_contacts": lane.delivered,
                "last_failure_at": lane.last_failure_at, "last_failure_status": failure and failure.status,
                "last_failure_error": failure and failure.error,
                "backlog": count, "backlog_oldest_at": ms_to_time(oldest) if oldest is not None else None})))
        return records

    async def _publish_now(self) -> None:
        if self._publisher is not None:
            await self._publisher.flush()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, sink: InjixoSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked) -> None:
        await self.sink.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        await self.sink.assigned({tp.partition for tp in assigned})
