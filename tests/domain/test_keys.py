"""Every key freshstream writes comes apart into what built it, and lands where the rules say."""

from __future__ import annotations

from hypothesis import given, strategies as st

from streams.domain.keys import (chat_key, chat_of_pending_key, contact_id, contact_key, group_key, interval_key,
                          pending_key, queue_of_interval_key, split_chat_key,
                          split_contact_key, split_group_key, split_interval_key)
from streams.domain.times import ms_to_time
from streams.worker.tables import partition_of

names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
ids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(names, ids, st.integers(1, 10**6))
def test_chat_pending_and_contact_ids_round_trip_and_share_the_chat_partition(integration, conversation, cycle):
    chat = chat_key(integration, conversation).encode()
    assert split_chat_key(chat) == (integration, conversation)
    assert chat_of_pending_key(pending_key(chat, cycle)) == chat
    assert partition_of(chat_of_pending_key(pending_key(chat, cycle)), 6) == partition_of(chat, 6)
    assert contact_id(integration, conversation, cycle) == f"{chat.decode()}:{cycle}"


@given(names, ids)
def test_group_and_contact_keys_round_trip(integration, value):
    assert split_group_key(group_key(integration, value)) == (integration, value)
    assert split_contact_key(contact_key(integration, value)) == (integration, value)


@given(names, ids, st.integers(946_684_800_000, 4_102_444_799_999), ids)
def test_interval_keys_round_trip_and_sit_in_their_queue_s_partition(integration, queue, start, contact):
    at = ms_to_time(start)
    key = interval_key(integration, queue, at)
    assert split_interval_key(key) == (integration, queue, at)  # a queue may hold slashes, a start none
    assert queue_of_interval_key(key) == contact_key(integration, queue)
    assert partition_of(queue_of_interval_key(key), 6) == partition_of(contact_key(integration, queue), 6)


def test_interval_keys_of_queues_with_slashes():
    key = interval_key("acme", "EU/Billing/", "2024-05-06T08:15:00.000Z")
    assert key == b"acme/EU/Billing//2024-05-06T08:15:00.000Z"
    assert split_interval_key(key) == ("acme", "EU/Billing/", "2024-05-06T08:15:00.000Z")
    assert queue_of_interval_key(key) == b"acme/EU/Billing/"
