"""Every key freshstream writes comes apart into what built it, and lands where the rules say."""

from __future__ import annotations

from hypothesis import given, strategies as st

from streams.domain.keys import (chat_key, chat_of_pending_key, contact_id, contact_key, group_key, pending_key,
                          split_chat_key, split_contact_key, split_group_key)
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
