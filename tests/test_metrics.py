"""Prometheus text rendering."""

from __future__ import annotations

from connectors.metrics import Counter, Histogram, Registry


def test_counter_and_histogram_render_in_text_format():
    registry = Registry()
    requests = registry.add(Counter("x_requests_total", "Requests."))
    latency = registry.add(Histogram("x_seconds", "Latency.", buckets=(0.1, 1)))
    requests.inc(integration='a"b', status="202")
    requests.inc(2, integration='a"b', status="202")
    latency.observe(0.05)
    latency.observe(5)
    text = registry.render()
    assert '# TYPE x_requests_total counter' in text
    assert 'x_requests_total{integration="a\\"b",status="202"} 3' in text
    assert 'x_seconds_bucket{le="0.1"} 1' in text and 'x_seconds_bucket{le="1"} 1' in text
    assert 'x_seconds_bucket{le="+Inf"} 2' in text and "x_seconds_count 2" in text
    assert "x_seconds_sum 5.05" in text
