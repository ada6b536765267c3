"""What injixo should show: the final contacts summed as the injixo sink rows them (tests of delivery)."""

from __future__ import annotations

from typing import Iterable, Mapping

from connectors.cli.tail import fold_contacts
from streams.domain.delivery import row_of
from streams.domain.times import ms_to_time, parse_time


def expected_sums(contacts: Iterable[Mapping], configuration_of: Mapping[str, str], attribution: str = "started",
                  minutes: int = 15) -> dict:
    """{(configuration id, queueIdentifier, queueName, interval start): {"offered", "handled", "duration"}}
    over the contacts that exist (each contact_id at its highest revision, retractions left out), for the
    integrations that deliver; the shape of FakeInjixo.sums(), zero sums dropped."""
    length = minutes * 60_000
    totals: dict = {}
    for contact in fold_contacts(contacts):
        configuration = configuration_of.get(contact["integration"])
        row = row_of(contact, attribution)
        if configuration is None or row is None:
            continue
        at = parse_time(row.timestamp)
        key = (configuration, row.queue_identifier, row.queue_name, ms_to_time(at - at % length))
        total = totals.setdefault(key, [0, 0, 0])
        total[0] += row.offered
        total[1] += row.handled
        total[2] += row.duration_ms
    return {key: {"offered": o, "handled": h, "duration": d / 1000}
            for key, (o, h, d) in sorted(totals.items()) if o or h or d}
