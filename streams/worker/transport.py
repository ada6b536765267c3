"""Faust's Kafka transport with a fetch wait the worker chooses, instead of Faust's fixed 1.5 s.

Why: faust-streaming builds its consumer with fetch_max_wait_ms=1500 and no setting to
change it. Real Kafka answers a fetch as soon as a record arrives, so the wait costs
nothing there; the embedded broker (Tansu) holds the fetch for a good part of the wait
even when records arrive meanwhile. Measured on it: a record produced at a random moment
reached a consumer after 410 ms (median) with a 1.5 s wait, 6 ms with 20 ms. Through the
whole pipeline that was most of the 202 → contact latency (bench/soak.py). A short wait
costs an idle worker a few empty fetches a second.
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as driver

__all__ = ["App"]


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; the consumer is not started yet.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose worker consumer waits at most `fetch_max_wait_ms` for a fetch."""

    def __init__(self, *args, fetch_max_wait_ms: int = 1500, **kwargs) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
