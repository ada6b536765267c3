"""The summary every benchmark ends with: each figure next to its baseline measured in the same run.

Two runs on a shared, noisy machine differ by more than most changes do, so a figure
alone says little; next to a baseline taken in the same run (a plain loop doing the
least the service must do, the same service at another commit, the rate asked for) the
ratio means something. A row is (figure, value, baseline, ratio, goal, verdict).
"""

from __future__ import annotations

__all__ = ["CEILING_GOAL", "HEADER", "met", "print_table"]

CEILING_GOAL = 0.50  # a service's rate next to its plain-loop ceiling (ingress, worker, replay): >= 50%
HEADER = ("figure", "value", "baseline", "ratio", "goal", "")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_table(rows: list[tuple[str, ...]], title: str = "summary") -> None:
    """The rows (the first a header) in aligned columns, under a blank line and `title`."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for n, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * width for width in widths))
