"""Group names per integration, as the worker knows them: the groups topic plus what events teach."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

import orjson

from streams.domain.keys import group_key, split_group_key
from streams.domain.times import format_time

__all__ = ["GroupNames", "group_record"]

logger = logging.getLogger(__name__)


def group_record(integration: str, group_id: str, name: str, seen_at: datetime) -> tuple[bytes, bytes]:
    """The groups-topic record (docs/reference.md, Topics) for one name, wherever the name was learnt."""
    value = orjson.dumps({"name": name, "seen_at": format_time(seen_at)})
    return group_key(integration, group_id), value


class GroupNames:
    """A process-local view of the compacted groups topic (`<integration>:<group_id>` → name).

    `learn` records names that app events carry and queues them for the topic, so
    other workers and later restarts know them too; `request_refresh` asks the
    Freshchat poller, when one is wired in, for a fresh list.
    """

    def __init__(self, refresh: Callable[[str], None] | None = None) -> None:
        self._names: dict[str, dict[str, str]] = {}
        self._refresh = refresh
        self.outbox: list[tuple[bytes, bytes]] = []

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one groups-topic record."""
        if not key:
            return
        integration, group_id = split_group_key(key)
        if value is None:
            self._names.get(integration, {}).pop(group_id, None)
            return
        try:
            name = orjson.loads(value).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(name, str) and name:
            self._names.setdefault(integration, {})[group_id] = name

    def for_integration(self, integration: str) -> dict[str, str]:
        return self._names.get(integration, {})

    def learn(self, integration: str, group_id: str, name: str) -> None:
        """Remember a name seen in an event; queue a groups record when it is new or changed."""
        known = self._names.setdefault(integration, {})
        if known.get(group_id) == name:
            return
        known[group_id] = name
        self.outbox.append(group_record(integration, group_id, name, datetime.now(timezone.utc)))

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every name known, per integration: a copy (for another process)."""
        return {integration: dict(names) for integration, names in self._names.items()}

    def restore(self, snapshot: dict[str, dict[str, str]]) -> None:
        """Know the names of a snapshot too; where both know a group, the snapshot's name wins."""
        for integration, names in snapshot.items():
            self._names.setdefault(integration, {}).update(names)

    def take_outbox(self) -> list[tuple[bytes, bytes]]:
        records, self.outbox = self.outbox, []
        return records

    def request_refresh(self, integration: str) -> None:
        if self._refresh is not None:
            self._refresh(integration)
