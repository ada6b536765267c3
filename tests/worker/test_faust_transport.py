"""The worker's Faust consumer fetches with the wait the settings give, not Faust's fixed 1.5 s."""

from __future__ import annotations

import asyncio

from connectors.cli.worker import assemble
from streams.settings import Settings


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


def test_the_web_server_binds_where_the_setting_says():
    """Faust binds every interface unless told otherwise; the docs promise loopback by default."""
    def conf(**changes):
        async def build():
            return assemble(Settings(kafka_bootstrap="127.0.0.1:1", **changes), partitions=3, web_port=6066).app.conf
        return asyncio.run(build())

    assert (conf().web_bind, conf().web_host) == ("127.0.0.1", "127.0.0.1")
    assert conf(worker_web_host="0.0.0.0").web_bind == "0.0.0.0"
