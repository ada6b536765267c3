"""Progress on stderr: plain lines now and then in a log, a bar redrawn in place on a terminal."""

from __future__ import annotations

import io

from connectors.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_line_per_interval_and_one_at_the_end_of_each_phase():
    now = [0.0]
    log = io.StringIO()
    progress = Progress("replay", log, interval=10, clock=lambda: now[0])
    for done, at in ((0, 0), (500, 4), (900, 11), (1000, 12), (1000, 13)):
        now[0] = at
        progress("raw topic r", done, 1000)
    progress("target topic c", 0, 0)
    assert log.getvalue().splitlines() == ["replay: raw topic r: 0/1,000 records (0.0%)",
                                           "replay: raw topic r: 900/1,000 records (90.0%)",
                                           "replay: raw topic r: 1,000/1,000 records (100.0%)",
                                           "replay: target topic c: 0/0 records (100.0%)"]


def test_on_a_terminal_the_bar_is_redrawn_and_a_stopped_one_ends_its_line():
    screen = Terminal()
    progress = Progress("replay", screen, interval=0, clock=lambda: 0.0)
    progress("raw topic r", 1, 2)
    progress.close()
    assert screen.getvalue().startswith("\rreplay: raw topic r [###############") and screen.getvalue().endswith("\n")
    assert "\n" not in screen.getvalue()[:-1]
