"""What an operator types for a time: relative to one "now", or RFC 3339 with a zone; never a guessed zone."""

from __future__ import annotations

import pytest

from zoneinfo import ZoneInfo

from streams.domain.times import (format_duration, ms_to_short_time, ms_to_zone_label, ms_to_zone_time,
                                  parse_operator_time, parse_time)

NOW = parse_time("2026-12-01T10:30:00Z")


@pytest.mark.parametrize("text, expected", [
    ("now", "2026-12-01T10:30:00Z"), ("NOW", "2026-12-01T10:30:00Z"),
    ("90m", "2026-12-01T09:00:00Z"), ("now-90m", "2026-12-01T09:00:00Z"), ("1h30m", "2026-12-01T09:00:00Z"),
    ("2d", "2026-11-29T10:30:00Z"), ("45s", "2026-12-01T10:29:15Z"),
    ("2026-12-01T09:00:00Z", "2026-12-01T09:00:00Z"), ("2026-12-01T10:00:00+01:00", "2026-12-01T09:00:00Z"),
    ("2026-12-01T09:00:00.250Z", "2026-12-01T09:00:00.250Z"),
])
def test_relative_and_zoned_times_are_read(text, expected):
    assert ms_to_short_time(parse_operator_time(text, NOW)) == expected


@pytest.mark.parametrize("text, reason", [
    ("2026-12-01T09:00:00", "has no zone: add Z for UTC or an offset (2026-12-01T09:00:00Z, "),
    ("2026-12-01", "has no zone"), ("yesterday", "is not a time"), ("now-", "is not a time"),
    ("-2h", "is not a time"), ("1714986000", "is not a time"), ("1990-01-01T00:00:00Z", "outside 2000-2100"),
])
def test_a_time_without_a_zone_or_not_a_time_is_refused_saying_how_to_write_one(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace("+", r"\+")):
        parse_operator_time(text, NOW)


@pytest.mark.parametrize("ms, text", [(5_400_000, "1 h 30 min"), (3_600_000, "1 h"), (45_000, "45 s"),
                                      (2 * 86_400_000 + 4 * 3_600_000 + 59_000, "2 d 4 h"), (250, "250 ms")])
def test_durations_read_as_people_say_them(ms, text):
    assert format_duration(ms) == text


def test_local_labels_carry_their_offset_so_a_night_the_clocks_go_back_has_no_repeated_label():
    berlin = ZoneInfo("Europe/Berlin")
    starts = [parse_time(f"2024-10-27T{h:02d}:{m:02d}:00Z") for h in (0, 1) for m in (0, 15, 30, 45)]
    labels = [ms_to_zone_label(ms, berlin) for ms in starts]
    assert labels[1] == "2024-10-27 02:15+02:00" and labels[5] == "2024-10-27 02:15+01:00"
    assert len(set(labels)) == len(labels)
    assert ms_to_zone_label(starts[1], None) == "2024-10-27 00:15Z"
    assert ms_to_zone_time(starts[5], berlin) == "2024-10-27T02:15:00+01:00"
    assert ms_to_zone_time(starts[5] + 250, berlin) == "2024-10-27T02:15:00.250+01:00"
