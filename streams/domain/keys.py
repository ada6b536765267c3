"""Every Kafka key and id freshstream writes, built and taken apart in one place.

The raw topic and the chat table share the chat key, so a chat's events and its state
sit in the same partition; the contacts topic is keyed by queue, so every contact of a
queue lands in one partition; a parked contact is keyed by its chat, so its changelog
partition is its chat's. The interval tables and the intervals topic are keyed by queue
too (`<integration>/<queue>/...`), so an interval lives in its contacts' partition, and so is
what the injixo sink delivered (`<integration>/<queue> NUL <contact_id>`).
Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["chat_key", "split_chat_key", "pending_key", "chat_of_pending_key", "group_key", "split_group_key",
           "contact_key", "split_contact_key", "contact_id", "interval_key", "split_interval_key", "queue_of_interval_key",
           "delivery_line_key", "split_delivery_line_key", "delivery_batch_key", "batch_of_delivery_key"]

_PENDING_SEP = b"\x00"  # a NUL never occurs in a chat key


def chat_key(integration: str, conversation_id: str) -> str:
    """`<integration>:<conversation_id>`: key of the raw topic and of the chat table."""
    return f"{integration}:{conversation_id}"


def split_chat_key(key: bytes | str) -> tuple[str, str]:
    """(integration, conversation_id); integration names hold no colon, conversation ids may."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    integration, _, conversation = text.partition(":")
    return integration, conversation


def pending_key(chat: bytes, cycle: int) -> bytes:
    """`<chat key> NUL <cycle>`: a contact parked until its group's name is known."""
    return chat + _PENDING_SEP + str(cycle).encode()


def chat_of_pending_key(key: bytes) -> bytes:
    """The chat key a pending key belongs to (which decides its partition)."""
    return key.split(_PENDING_SEP, 1)[0]


def group_key(integration: str, group_id: str) -> bytes:
    """`<integration>:<group_id>`: key of the groups topic."""
    return f"{integration}:{group_id}".encode()


def split_group_key(key: bytes) -> tuple[str, str]:
    """(integration, group_id) of a groups-topic key."""
    integration, _, group_id = key.decode(errors="replace").partition(":")
    return integration, group_id


def contact_key(integration: str, queue: str) -> bytes:
    """`<integration>/<queue>`: key of the contacts topic."""
    return f"{integration}/{queue}".encode()


def split_contact_key(key: bytes | None) -> tuple[str, str]:
    """(integration, queue) of a contacts-topic key (queue names may hold a slash)."""
    integration, _, queue = (key or b"").decode(errors="replace").partition("/")
    return integration, queue


def contact_id(integration: str, conversation_id: str, cycle: int) -> str:
    """`<integration>:<conversation_id>:<cycle>`: deterministic, never reused for another cycle."""
    return f"{integration}:{conversation_id}:{cycle}"


def interval_key(integration: str, queue: str, start: str) -> bytes:
    """`<integration>/<queue>/<interval start>`: key of the intervals topic and table (start as ms_to_time)."""
    return f"{integration}/{queue}/{start}".encode()


def split_interval_key(key: bytes) -> tuple[str, str, str]:
    """(integration, queue, interval start) of an interval key; the start holds no slash, a queue may."""
    head, _, start = key.decode(errors="replace").rpartition("/")
    integration, _, queue = head.partition("/")
    return integration, queue, start


def queue_of_interval_key(key: bytes) -> bytes:
    """The contacts-topic key (`<integration>/<queue>`) an interval key belongs to: it decides
    the partition, so an interval's state sits where its contacts arrive."""
    return key.rsplit(b"/", 1)[0]


_BATCH_PREFIX = b"\x00batch\x00"  # a line key starts with an integration name, never with NUL


def delivery_line_key(contact_key_: bytes, contact_id_: str) -> bytes:
    """`<integration>/<queue> NUL <contact_id>`: what the injixo sink delivered for one contact under one
    queue key, on the delivery state topic in that queue's contacts partition."""
    return contact_key_ + _PENDING_SEP + contact_id_.encode()


def split_delivery_line_key(key: bytes) -> tuple[bytes, str]:
    """(contacts-topic key, contact_id) of a line key."""
    head, _, contact = key.partition(_PENDING_SEP)
    return head, contact.decode(errors="replace")


def delivery_batch_key(batch_id: str) -> bytes:
    """The key of a batch the injixo sink is posting (an intent), tombstoned once it is delivered."""
    return _BATCH_PREFIX + batch_id.encode()


def batch_of_delivery_key(key: bytes) -> str | None:
    """The batch id of an intent key; None for a line key."""
    return key[len(_BATCH_PREFIX):].decode() if key.startswith(_BATCH_PREFIX) else None
