"""The Freshchat REST client against a fake Freshchat over real HTTP on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from connectors.kafka.broker import free_port
from connectors.backoff import BACKOFF_BASE, BACKOFF_CAP, backoff_delay
from connectors.freshchat.client import (FreshchatAuthError, FreshchatClient, FreshchatError, FreshchatNotFound,
                                         FreshchatRateLimited, FreshchatUnavailable)
from tests.fake_freshchat import FakeFreshchat
from tests.kafka_records import SECRETS

pytestmark = pytest.mark.integration


class Sleeps(list):
    """An injected sleep that records its delays and returns at once."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


def call(loop_thread, server: FakeFreshchat, method: str, *args, api_key: str | None = None,
         base_url: str | None = None, **options):
    """Run one client method on the test loop, with a fresh httpx client."""

    async def go():
        async with httpx.AsyncClient(timeout=5) as http:
            client = FreshchatClient(base_url or server.url, api_key or server.api_key, http,
                                     integration="acme", **options)
            return await getattr(client, method)(*args)

    return loop_thread.run(go())


def add_groups(server: FakeFreshchat, count: int) -> list[dict]:
    for n in range(count):
        server.add_group(f"g-{n:03d}", f"Queue {n}")
    return [{"id": f"g-{n:03d}", "name": f"Queue {n}"} for n in range(count)]


def test_list_groups_walks_every_page_with_the_page_size_asked(loop_thread, fake_freshchat):
    expected = add_groups(fake_freshchat, 7)
    groups = call(loop_thread, fake_freshchat, "list_groups", page_size=3)
    assert groups == expected
    pages = [(r.query["page"], r.query["items_per_page"]) for r in fake_freshchat.group_requests()]
    assert pages == [("1", "3"), ("2", "3"), ("3", "3")]
    assert {r.auth for r in fake_freshchat.requests} == {"valid"}


def test_list_groups_follows_links_when_pagination_is_missing(loop_thread, fake_freshchat):
    expected = add_groups(fake_freshchat, 5)
    fake_freshchat.pagination_block = False
    assert call(loop_thread, fake_freshchat, "list_groups", page_size=2) == expected
    assert len(fake_freshchat.group_requests()) == 3


def test_list_groups_of_an_account_without_groups_is_one_request(loop_thread, fake_freshchat):
    assert call(loop_thread, fake_freshchat, "list_groups") == []
    assert len(fake_freshchat.group_requests()) == 1


def test_get_conversation_and_missing_conversation(loop_thread, fake_freshchat):
    fake_freshchat.conversations["c/1"] = {"conversation_id": "c/1", "status": "resolved",
                                           "assigned_group_id": "g-001"}
    assert call(loop_thread, fake_freshchat, "get_conversation", "c/1")["assigned_group_id"] == "g-001"
    with pytest.raises(FreshchatNotFound):
        call(loop_thread, fake_freshchat, "get_conversation", "nope")


def test_wrong_key_is_an_auth_error_that_names_the_integration_and_hides_the_key(loop_thread, fake_freshchat):
    wrong = "fc_wrong_key_0123456789abcdef"
    SECRETS.add(wrong)
    with pytest.raises(FreshchatAuthError) as caught:
        call(loop_thread, fake_freshchat, "list_groups", api_key=wrong, sleep=Sleeps())
    message = str(caught.value)
    assert "integration acme" in message and fake_freshchat.url in message
    assert "check the Freshchat API key" in message and "401" in message
    assert wrong not in message and fake_freshchat.api_key not in message and "Bearer" not in message
    assert [r.auth for r in fake_freshchat.requests] == ["invalid"]  # not retried


def test_429_with_retry_after_waits_what_freshchat_asks(loop_thread, fake_freshchat):
    expected = add_groups(fake_freshchat, 2)
    fake_freshchat.fail_next(429, times=2, retry_after="7")
    sleeps = Sleeps()
    assert call(loop_thread, fake_freshchat, "list_groups", sleep=sleeps) == expected
    assert sleeps == [7.0, 7.0]
    assert len(fake_freshchat.group_requests()) == 3


def test_429_without_retry_after_backs_off_exponentially(loop_thread, fake_freshchat):
    add_groups(fake_freshchat, 1)
    fake_freshchat.fail_next(429, times=4)
    sleeps = Sleeps()
    assert len(call(loop_thread, fake_freshchat, "list_groups", sleep=sleeps)) == 1
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps):
        ceiling = BACKOFF_BASE * 2 ** attempt
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)


def test_backoff_is_capped_and_jittered():
    assert backoff_delay(20, jitter=lambda: 1.0) == BACKOFF_CAP
    assert backoff_delay(20, jitter=lambda: 0.0) == BACKOFF_CAP / 2
    assert backoff_delay(3, jitter=lambda: 1.0) == BACKOFF_BASE * 8


def test_5xx_is_retried_then_succeeds(loop_thread, fake_freshchat):
    expected = add_groups(fake_freshchat, 3)
    fake_freshchat.fail_next(500, times=2)
    fake_freshchat.fail_next(503)
    sleeps = Sleeps()
    assert call(loop_thread, fake_freshchat, "list_groups", sleep=sleeps) == expected
    assert len(sleeps) == 3 and len(fake_freshchat.group_requests()) == 4


def test_rate_limited_after_retries_run_out(loop_thread, fake_freshchat):
    fake_freshchat.fail_next(429, times=3, retry_after="2")
    sleeps = Sleeps()
    with pytest.raises(FreshchatRateLimited) as caught:
        call(loop_thread, fake_freshchat, "list_groups", sleep=sleeps, max_retries=2)
    assert caught.value.retry_after == 2.0
    assert sleeps == [2.0, 2.0] and len(fake_freshchat.requests) == 3


def test_unavailable_after_retries_run_out(loop_thread, fake_freshchat):
    fake_freshchat.fail_next(502, times=4)
    sleeps = Sleeps()
    with pytest.raises(FreshchatUnavailable, match="502"):
        call(loop_thread, fake_freshchat, "list_groups", sleep=sleeps, max_retries=3)
    assert len(sleeps) == 3 and len(fake_freshchat.requests) == 4


def test_connection_refused_is_unavailable_not_an_httpx_error(loop_thread, fake_freshchat):
    sleeps = Sleeps()
    with pytest.raises(FreshchatUnavailable) as caught:
        call(loop_thread, fake_freshchat, "list_groups", base_url=f"http://127.0.0.1:{free_port()}",
             sleep=sleeps, max_retries=2)
    assert not isinstance(caught.value, httpx.HTTPError)
    assert "cannot reach Freshchat" in str(caught.value) and len(sleeps) == 2


def test_server_stopped_mid_use_is_unavailable(loop_thread, fake_freshchat):
    add_groups(fake_freshchat, 1)
    assert len(call(loop_thread, fake_freshchat, "list_groups")) == 1
    loop_thread.run(fake_freshchat.stop())
    with pytest.raises(FreshchatUnavailable):
        call(loop_thread, fake_freshchat, "list_groups", sleep=Sleeps(), max_retries=1)


def test_a_bad_request_is_a_plain_freshchat_error(loop_thread, fake_freshchat):
    with pytest.raises(FreshchatError, match="400") as caught:
        call(loop_thread, fake_freshchat, "list_groups", page_size=500, sleep=Sleeps())
    assert type(caught.value) is FreshchatError
