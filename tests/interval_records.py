"""What the intervals topic says, folded as a consumer folds it, next to what the contacts say."""

from __future__ import annotations

import orjson

from streams.domain.interval_figures import figures, group_by
from streams.domain.times import parse_time
from streams.settings import Settings

FIGURES = tuple(name for name in figures([], 60_000) if name != "sla_seconds")  # every figure a contact moves


def final_intervals(records) -> dict[tuple, dict]:
    """(integration, queue, start ms) -> the figures of the highest revision per key; an interval
    whose contacts all left (contacts 0) is as good as absent."""
    latest: dict[bytes, dict] = {}
    for record in records:
        value = orjson.loads(record.value)
        known = latest.get(record.key)
        if known is None or value["revision"] > known["revision"]:
            latest[record.key] = value
    return {(v["integration"], v["queue"], parse_time(v["interval_start"])): {f: v[f] for f in FIGURES}
            for v in latest.values() if v["contacts"]}


def expected_intervals(final_contacts, settings: Settings, integration: str | None = None) -> dict[tuple, dict]:
    """The straightforward group-by of the final (live) contacts, with the worker's settings."""
    live = [c for c in final_contacts if not c.get("retracted")
            and (integration is None or c["integration"] == integration)]
    grouped = group_by(live, settings.interval_minutes, settings.interval_attribution,
                       round(settings.sla_seconds * 1000))
    return {key: {f: figures[f] for f in FIGURES} for key, figures in grouped.items()}


def interval(integration: str, queue: str, start: str, revision: int, *, contacts: int = 1,
             updated_at: str = "2024-05-06T10:00:00.000Z", outcomes: dict | None = None) -> dict:
    """An interval record as the worker writes it (schemas/interval.schema.json), figures made up."""
    outcomes = {"resolved": contacts} if outcomes is None else outcomes
    return {"v": 1, "integration": integration, "queue": queue, "interval_start": start, "interval_minutes": 15,
            "attribution": "started", "revision": revision, "updated_at": updated_at, "contacts": contacts,
            "offered": contacts, "handled": contacts, "unanswered": 0, "handle_seconds_total": 600.0 * contacts,
            "aht_seconds": 600.0 if contacts else None, "answer_seconds_total": 60.0 * contacts,
            "asa_seconds": 60.0 if contacts else None, "max_wait_seconds": 60.0 if contacts else None,
            "sla_seconds": 60.0, "within_sla": contacts, "service_level": 1.0 if contacts else None,
            "expired": 0, "outcomes": outcomes, "group_ids": [f"g-{queue.lower()}"] if contacts else []}


def interval_key(record: dict) -> bytes:
    """The intervals-topic key the record is written under."""
    return f"{record['integration']}/{record['queue']}/{record['interval_start']}".encode()
