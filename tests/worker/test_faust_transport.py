"""The worker's Faust consumer fetches with the wait the settings give, not Faust's fixed 1.5 s."""

from __future__ import annotations

import asyncio

from streams.settings import Settings
from connectors.cli.worker import assemble


def worker_consumer(settings: Settings):
    """The AIOKafkaConsumer Faust would start for this worker (built, never started: no broker needed)."""
    async def build():
        app = assemble(settings, partitions=3, web_port=6066).app
        thread = app.consumer._new_consumer_thread()
        return thread._create_worker_consumer(app.transport)

    return asyncio.run(build())


def test_fetch_wait_comes_from_the_settings_and_faust_keeps_the_rest():
    consumer = worker_consumer(Settings(kafka_bootstrap="127.0.0.1:1", worker_fetch_max_wait_ms=40,
                                        worker_app_id="fetch-wait"))
    assert consumer._fetch_max_wait_ms == 40
    assert consumer._group_id == "fetch-wait"
    assert consumer._session_timeout_ms == 6000 and consumer._enable_auto_commit is False


def test_default_wait_is_short():
    assert worker_consumer(Settings(kafka_bootstrap="127.0.0.1:1"))._fetch_max_wait_ms == 100
