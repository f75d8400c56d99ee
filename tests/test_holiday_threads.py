"""The holiday calendars are shared by threads (the loop's dial checks, the store threads'
plans and claims), and holidays fills a year on its first look: `years` first, its holidays
after. A second thread looking meanwhile must wait for them, not take the year as empty."""
from __future__ import annotations

import threading
import time
from datetime import date

from holidays.countries.france import France

from ivr.compliance.holiday_place import holiday_name, on_holiday


class _SlowFrance(France):
    """France's calendar, filling a year slowly: the window in which a second look lands."""

    def _populate(self, year: int) -> None:
        time.sleep(0.3)
        super()._populate(year)


def _race(look: object) -> object:
    """What a look at 1 January 2031 says while another thread fills 2031 (its first look)."""
    calendar = _SlowFrance()
    first = threading.Thread(target=look, args=(calendar, date(2031, 1, 2)))
    first.start()
    deadline = time.monotonic() + 5
    while 2031 not in calendar.years and time.monotonic() < deadline:
        time.sleep(0.001)  # the first look has started filling 2031
    answer = look(calendar, date(2031, 1, 1))  # New Year's Day, meanwhile
    first.join()
    return answer


def test_a_look_while_another_thread_fills_the_year_sees_its_holidays() -> None:
    assert _race(on_holiday) is True
    assert _race(holiday_name) != ""


def test_the_library_alone_misses_them() -> None:
    """Why the lock: the same race on the bare calendar says 1 January is a working day."""
    assert _race(lambda calendar, day: day in calendar) is False
