"""The one time format of the command line (keyturn.cli.timefmt), against a fixed clock."""

from __future__ import annotations

import time

import pytest

from keyturn.cli.timefmt import relative, when

#: 2026-12-02 14:00:00 in the local time zone, whatever it is.
NOW = time.mktime((2026, 12, 2, 14, 0, 0, 0, 0, -1))


@pytest.mark.parametrize(("offset", "shown"), [
    (549, "14:09:09 (in 9 min)"),
    (-7200, "12:00:00 (2 h ago)"),
    (45, "14:00:45 (in 45 s)"),
    (0, "14:00:00 (now)"),
    (3900, "15:05:00 (in 1 h 5 min)"),
    (-360, "13:54:00 (6 min ago)"),
])
def test_a_time_today_is_the_clock_time_and_how_far(offset: int, shown: str) -> None:
    assert when(NOW + offset, NOW) == shown


def test_another_day_has_its_date() -> None:
    tomorrow = time.mktime((2026, 12, 3, 9, 40, 0, 0, 0, -1))
    assert when(tomorrow, NOW) == "2026-12-03 09:40:00 (in 20 h)"  # 19 h 40 min
    assert when(NOW - 5 * 86400, NOW).endswith("(5 days ago)")


def test_no_time_is_a_dash() -> None:
    assert when(None, NOW) == "-"


def test_relative_phrases() -> None:
    assert relative(0.5) == "now"
    assert relative(-59) == "59 s ago"
    assert relative(36000) == "in 10 h"
    assert relative(3 * 86400) == "in 3 days"
    assert relative(14 * 86400 - 5) == "in 14 days"
