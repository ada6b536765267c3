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
