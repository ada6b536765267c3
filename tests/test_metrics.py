"""The metrics page every process serves: prometheus_client's text format, with gauges read at scrape time."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import CallbackGauge, MetricSet


def test_counter_and_histogram_render_in_text_format():
    metrics = MetricSet()
    requests = Counter("x_requests_total", "Requests.", ["integration", "status"], registry=metrics.registry)
    latency = Histogram("x_seconds", "Latency.", buckets=(0.1, 1), registry=metrics.registry)
    requests.labels('a"b', "202").inc()
    requests.labels('a"b', "202").inc(2)
    latency.observe(0.05)
    latency.observe(5)
    text = metrics.render().decode()
    assert '# TYPE x_requests_total counter' in text
    assert 'x_requests_total{integration="a\\"b",status="202"} 3.0' in text
    assert 'x_seconds_bucket{le="0.1"} 1.0' in text and 'x_seconds_bucket{le="1.0"} 1.0' in text
    assert 'x_seconds_bucket{le="+Inf"} 2.0' in text and "x_seconds_count 2.0" in text
    assert "x_seconds_sum 5.05" in text
    assert "_created" not in text  # creation-time series are switched off
    assert metrics.value("x_requests_total", integration='a"b', status="202") == 3
    assert metrics.value("x_requests_total", integration="other", status="202") == 0


def test_a_callback_gauge_is_read_at_each_scrape():
    rows = []
    metrics = MetricSet()
    metrics.add(CallbackGauge("x_lag_records", "Lag.", lambda: rows))
    assert "x_lag_records" in metrics.render().decode() and "x_lag_records{" not in metrics.render().decode()
    rows.extend([({"partition": "0", "topic": "raw"}, 5), ({"partition": "1", "topic": "raw"}, 0)])
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = {tuple(sorted(s.labels.items())): s.value for s in families["x_lag_records"].samples}
    assert samples == {(("partition", "0"), ("topic", "raw")): 5.0, (("partition", "1"), ("topic", "raw")): 0.0}


def test_two_sets_in_one_process_do_not_clash():
    first, second = MetricSet(), MetricSet()
    for metrics in (first, second):
        Counter("x_events_total", "Events.", registry=metrics.registry).inc()
    assert first.value("x_events_total") == second.value("x_events_total") == 1


def test_interval_gauges_show_the_current_and_previous_interval_per_queue():
    import asyncio

    import orjson

    from streams.domain.intervals import IntervalAggregator
    from streams.domain.metrics import WorkerMetrics
    from tests.contact_records import contact

    now = [1714986000.0 + 20 * 60]  # 2024-05-06T09:20Z: the current interval is 09:15, the previous 09:00
    async def emit(records):
        pass  # the records' contents are what the gauges read back

    aggregator = IntervalAggregator(intervals={}, emit=emit, clock=lambda: now[0])
    metrics = WorkerMetrics()
    metrics.watch_intervals(aggregator)
    records = [contact("c1", 1, "Support", "2024-05-06T09:30:00.000Z"),
               {**contact("c2", 1, "Support", "2024-05-06T09:30:00.000Z"), "started_at": "2024-05-06T09:16:00.000Z",
                "handled": False, "wait_seconds": None},
               {**contact("c3", 1, "Sales", "2024-05-06T09:30:00.000Z"), "started_at": "2024-05-06T08:40:00.000Z"}]
    asyncio.run(aggregator.process([(None, orjson.dumps(r), n) for n, r in enumerate(records)]))

    def value(name, queue, interval):
        return metrics.value(name, integration="acme", queue=queue, interval=interval)

    assert value("freshstream_interval_offered", "Support", "previous") == 1  # c1 started 09:00
    assert value("freshstream_interval_offered", "Support", "current") == 1  # c2 started 09:16
    assert value("freshstream_interval_handled", "Support", "current") == 0
    assert value("freshstream_interval_aht_seconds", "Support", "previous") == 600.0
    assert value("freshstream_interval_service_level", "Support", "previous") == 1.0
    assert "Sales" not in metrics.render().decode()  # 08:30 is older than the previous interval
    now[0] += 15 * 60  # 09:35: 09:15 is now the previous interval, 09:00 gone
    assert value("freshstream_interval_offered", "Support", "previous") == 1
    assert value("freshstream_interval_offered", "Support", "current") == 0
    assert 'interval="current"' not in metrics.render().decode()


def test_worker_timers_are_timed_into_a_histogram_and_the_longest_call():
    import asyncio

    from streams.domain.metrics import WorkerMetrics

    metrics = WorkerMetrics()

    async def a_call(seconds):
        with metrics.timing("expire_idle"):
            await asyncio.sleep(seconds)

    asyncio.run(a_call(0.02))
    asyncio.run(a_call(0.001))
    metrics.observe_timer("release_pending", 0.003)
    assert metrics.value("freshstream_worker_timer_seconds_count", timer="expire_idle") == 2
    assert metrics.value("freshstream_worker_timer_seconds_bucket", timer="expire_idle", le="0.001") == 0
    assert metrics.value("freshstream_worker_timer_seconds_bucket", timer="expire_idle", le="0.05") == 2
    assert metrics.value("freshstream_worker_timer_seconds_bucket", timer="release_pending", le="0.005") == 1
    longest = metrics.value("freshstream_worker_timer_longest_seconds", timer="expire_idle")
    assert 0.02 <= longest < 0.5  # the longer of the two calls, across its await, not the last
    assert metrics.value("freshstream_worker_timer_longest_seconds", timer="release_pending") == 0.003
