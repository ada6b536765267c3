"""Bad input over real HTTP: no 5xx but 503, no crash, every reject explained, nothing acknowledged lost,
and slow or idle clients cut off rather than holding the ingress's sockets."""

from __future__ import annotations

import json
import socket
import time

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from connectors.ingress.service import IngressService
from tests.kafka_records import read_topic, wait_until
from tests.payloads import app_message, webhook_message

pytestmark = pytest.mark.integration
ANSWERS = {202, 400, 401, 413, 415}
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def guarded(loop_thread, settings):
    """An ingress with short timeouts and a small connection limit."""
    service = IngressService(settings.replace(ingress_body_timeout_seconds=1.0, ingress_idle_timeout_seconds=1.5,
                                              ingress_max_connections=20), "127.0.0.1", 0)
    loop_thread.run(service.start())
    yield service
    loop_thread.run(service.stop())


def explained(response: httpx.Response) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.text)
    if response.status_code == 400 and response.headers["content-type"].startswith("text/plain"):
        # malformed HTTP (a control character in a header): aiohttp's parser answers before any
        # handler runs, naming the bad bytes, e.g. "Invalid header value char: b'X-Retry-Count: \x7f'"
        assert response.text.startswith("Invalid") and len(response.text) > 20, response.text
    elif response.status_code != 202:
        body = response.json()
        assert body["error"] and len(body["message"]) > 20, body


def test_random_bodies_and_headers_get_a_documented_answer_and_accepted_events_are_kept(
        loop_thread, settings, ingress, add_integration):
    key = add_integration("acme")
    accepted: list[str] = []
    with httpx.Client(base_url=ingress.url, timeout=10) as client:
        def post(body: bytes, headers: dict) -> None:
            response = client.post("/webhooks/freshchat/acme", content=body, headers=headers)
            explained(response)
            if response.status_code == 202:
                accepted.extend(response.json()["event_ids"])

        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        @FUZZ
        @given(JSON)
        def any_json(value):
            post(json.dumps(value).encode(), auth)  # stdlib: it writes integers of any size

        @FUZZ
        @given(st.binary(max_size=300))
        def any_bytes(value):
            post(value, auth)

        @FUZZ
        @given(st.sampled_from([webhook_message(), app_message()]), st.text(max_size=10), JSON,
               st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1",
                                "application/vnd.api+json", "", "json"]),
               st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=12))
        def fields_replaced(base, field, value, content_type, retry):
            payload = {**base, field: value}
            post(json.dumps(payload).encode(), {**auth, "Content-Type": content_type,
                                         "X-Retry-Count": (retry.strip() or "x").encode("latin-1")})

        any_json()
        any_bytes()
        fields_replaced()
        post(b"\xff\xfe{\"action\": \"message_create\"}", auth)  # invalid UTF-8
        post(b"[" * 100_000 + b"]" * 100_000, auth)  # deep nesting
        post(orjson.dumps([webhook_message()] * 5000), auth)  # a huge array, under the size limit
        post(b"{}", {"Authorization": "Bearer \u00e9\u00e8".encode("latin-1"), "Content-Type": "application/json"})
        post(b"{}", {"Authorization": "Basic Zm9vOmJhcg==", "Content-Type": "application/json"})

    got = {orjson.loads(r.value)["event_id"] for r in loop_thread.run(
        read_topic(settings, settings.raw_topic, len(accepted), timeout=30))}
    assert accepted and set(accepted) <= got, f"{len(set(accepted) - got)} acknowledged events are not on the raw topic"


def read_answer(sock: socket.socket, within: float) -> bytes:
    """One HTTP answer with a JSON body, read until its closing brace or the server closes."""
    sock.settimeout(within)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def raw_connection(service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) before `within` seconds pass."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_body_that_never_finishes_gets_408_and_the_connection_closes(guarded):
    sock = raw_connection(guarded)  # unsigned: the signature check needs the whole body, so it waits for it
    sock.sendall(b"POST /webhooks/freshchat/acme HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"action\":")
    started = time.monotonic()
    answer = read_answer(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer and b"send the whole request at once" in answer
    assert time.monotonic() - started < 5
    assert closed_by_server(sock, 5)


def test_an_oversized_body_is_refused_from_its_length_before_a_byte_of_it_is_sent(guarded, add_integration):
    """The 413 comes from Content-Length alone: the ingress never waits for (or buffers) 50 MB."""
    key = add_integration("acme-huge")
    sock = raw_connection(guarded)
    sock.sendall(b"POST /webhooks/freshchat/acme-huge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {key}\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
    answer = read_answer(sock, 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer


def test_a_request_trickled_byte_by_byte_is_cut_off(guarded):
    sock = raw_connection(guarded)
    started = time.monotonic()
    request = b"POST /webhooks/freshchat/acme HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break  # closed by the server: what we want
        if time.monotonic() - started > 8:
            break
        time.sleep(0.05)  # the client under test is slow on purpose; nothing is awaited here
    assert closed_by_server(sock, 5), "the trickling connection was never closed"
    assert time.monotonic() - started < 8, "it was closed only after the client stopped on its own"


def test_idle_connections_are_bounded_and_swept_and_service_goes_on(guarded, add_integration):
    key = add_integration("acme")
    wait_until(lambda: guarded.registry.get("acme") is not None, what="the guarded ingress knows acme")
    idle = [raw_connection(guarded) for _ in range(30)]
    refused = [s for s in idle if closed_by_server(s, 0.3)]
    assert len(refused) >= 10, f"only {len(refused)} of 30 idle connections were refused with a limit of 20"
    wait_until(lambda: all(closed_by_server(s, 0.05) for s in idle), timeout=10, interval=0.2,
               what="every idle connection closed by the sweep")
    response = httpx.post(f"{guarded.url}/webhooks/freshchat/acme", content=orjson.dumps(webhook_message()),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert response.status_code == 202
    metrics = httpx.get(f"{guarded.url}/metrics").text
    assert "freshstream_ingress_connections_refused_total 10.0" in metrics or \
        any(line.startswith("freshstream_ingress_connections_refused_total") and float(line.split()[1]) >= 10
            for line in metrics.splitlines())
    for sock in idle:
        sock.close()


def test_a_malformed_header_is_answered_and_not_logged_with_its_bytes(guarded):
    import logging

    from connectors.cli.logs import malformed_request_filter as _malformed_request_filter

    logger = logging.getLogger("aiohttp.server")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Keep()
    logger.addFilter(_malformed_request_filter)
    logger.addHandler(handler)
    try:
        sock = raw_connection(guarded)
        sock.sendall(b"POST /webhooks/freshchat/acme HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer fsk_not_a_real_key\x7f\r\nContent-Length: 0\r\n\r\n")
        sock.settimeout(5)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.0 400") and b"Invalid header value char" in answer
        assert closed_by_server(sock, 5)
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(_malformed_request_filter)
    assert not [r for r in seen if "fsk_not_a_real_key" in r.getMessage() + str(r.exc_info)]
