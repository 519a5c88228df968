"""Maintenance windows: one-off and weekly schedules, midnight crossing, DST, change points."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spansignals.processors.config.alerts import MaintenanceConfig
from spansignals.processors.schedule import WEEKDAYS, ActiveCache, MaintenanceWindow, windows_from_config

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: dt.tzinfo = UTC, fold: int = 0
) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold).timestamp()


def test_one_off_window_is_half_open():
    """A one-off window covers starts_at <= t < ends_at; naive datetimes are UTC."""
    w = MaintenanceWindow("m", starts_at=dt.datetime(2026, 1, 1, 10), ends_at=dt.datetime(2026, 1, 1, 11))
    assert not w.is_active(ts(2026, 1, 1, 9, 59))
    assert w.is_active(ts(2026, 1, 1, 10))
    assert w.is_active(dt.datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
    assert not w.is_active(ts(2026, 1, 1, 11))
    assert w.next_change(ts(2026, 1, 1, 9)) == ts(2026, 1, 1, 10)
    assert w.next_change(ts(2026, 1, 1, 10, 30)) == ts(2026, 1, 1, 11)
    assert w.next_change(ts(2026, 1, 1, 12)) == math.inf


def test_weekly_window_on_listed_weekday_only():
    """tue 02:00-03:00 UTC is active on Tuesdays in that hour and nowhere else."""
    w = MaintenanceWindow("deploy", weekdays=["tue"], start="02:00", end="03:00")
    tuesday = dt.date(2026, 11, 24)
    assert tuesday.weekday() == 1
    assert w.is_active(ts(2026, 11, 24, 2, 0))
    assert w.is_active(ts(2026, 11, 24, 2, 59))
    assert not w.is_active(ts(2026, 11, 24, 3, 0))
    assert not w.is_active(ts(2026, 11, 24, 1, 59))
    assert not w.is_active(ts(2026, 11, 25, 2, 30))
    assert w.next_change(ts(2026, 11, 22, 12)) == ts(2026, 11, 24, 2)


def test_window_crossing_midnight_belongs_to_its_start_day():
    """sat 22:00-02:00 runs Saturday night into Sunday, not Friday night into Saturday."""
    w = MaintenanceWindow("night", weekdays=["sat"], start="22:00", end="02:00", timezone="Europe/Berlin")
    assert w.is_active(ts(2026, 11, 28, 23, 0, BERLIN))  # Saturday 23:00
    assert w.is_active(ts(2026, 11, 29, 1, 59, BERLIN))  # Sunday 01:59
    assert not w.is_active(ts(2026, 11, 29, 2, 0, BERLIN))
    assert not w.is_active(ts(2026, 11, 28, 1, 0, BERLIN))  # Saturday 01:00 (Friday night)
    assert w.next_change(ts(2026, 11, 28, 23, 0, BERLIN)) == ts(2026, 11, 29, 2, 0, BERLIN)


def test_equal_start_and_end_is_a_whole_day():
    """start == end means 24 hours from start."""
    w = MaintenanceWindow("day", weekdays=["mon"], start="00:00", end="00:00")
    assert w.is_active(ts(2026, 11, 23, 0, 0))
    assert w.is_active(ts(2026, 11, 23, 23, 59))
    assert not w.is_active(ts(2026, 11, 24, 0, 0))


def test_spring_forward_skipped_hour_never_happens():
    """On the spring-forward day a window inside the skipped hour is empty; one straddling it is shorter."""
    inside = MaintenanceWindow("gap", start="02:00", end="03:00", timezone="America/New_York")
    straddle = MaintenanceWindow("wide", start="01:30", end="03:30", timezone="America/New_York")
    day_start, day_end = ts(2026, 3, 8, 0, 0, NEW_YORK), ts(2026, 3, 9, 0, 0, NEW_YORK)
    assert inside.occurrences(day_start, day_end) == []
    ((a, b),) = straddle.occurrences(day_start, day_end)
    assert (a, b) == (ts(2026, 3, 8, 1, 30, NEW_YORK), ts(2026, 3, 8, 3, 30, NEW_YORK))
    assert b - a == 3600  # 01:30 EST .. 03:30 EDT is one real hour


def test_fall_back_repeated_hour_counts_twice():
    """On the fall-back day 01:00-02:00 local covers both passes through that hour (two real hours)."""
    w = MaintenanceWindow("repeat", start="01:00", end="02:00", timezone="America/New_York")
    occ = w.occurrences(ts(2026, 11, 1, 0, 0, NEW_YORK), ts(2026, 11, 2, 0, 0, NEW_YORK))
    assert occ == [(ts(2026, 11, 1, 1, 0, NEW_YORK, fold=0), ts(2026, 11, 1, 2, 0, NEW_YORK))]
    assert occ[0][1] - occ[0][0] == 7200


def test_from_config_and_bad_arguments():
    """Windows build from MaintenanceConfig entries; contradictory arguments raise ValueError."""
    configs = [
        MaintenanceConfig.model_validate(
            {"name": "weekly", "schedule": {"weekdays": ["tue"], "start": "02:00", "end": "03:00"}}
        ),
        MaintenanceConfig.model_validate(
            {
                "name": "once",
                "starts_at": "2026-12-01T10:00:00+01:00",
                "ends_at": "2026-12-01T12:00:00+01:00",
                "match": {"slo": "x"},
            }
        ),
    ]
    weekly, once = windows_from_config(configs)
    assert weekly.recurring and not once.recurring
    assert once.match == {"slo": "x"}
    assert once.is_active(ts(2026, 12, 1, 9, 30))
    with pytest.raises(ValueError, match="either"):
        MaintenanceWindow("x")
    with pytest.raises(ValueError, match="before"):
        MaintenanceWindow("x", starts_at=10.0, ends_at=5.0)
    with pytest.raises(ValueError, match="weekdays"):
        MaintenanceWindow("x", weekdays=["funday"], start="01:00", end="02:00")


def _brute_active(window_days: set[int], start_min: int, length: int, tz: ZoneInfo, t: float) -> bool:
    """Independent reference: is the local wall time within an occurrence starting on a listed day?"""
    local = dt.datetime.fromtimestamp(t, tz).replace(tzinfo=None)
    for back in range(0, 2):
        day = (local - dt.timedelta(days=back)).date()
        if day.weekday() not in window_days:
            continue
        begin = dt.datetime(day.year, day.month, day.day) + dt.timedelta(minutes=start_min)
        if begin <= local < begin + dt.timedelta(minutes=length):
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(
    days=st.sets(st.sampled_from(WEEKDAYS), min_size=1),
    start=st.integers(0, 1439),
    end=st.integers(0, 1439),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
    t=st.floats(ts(2026, 1, 1), ts(2027, 12, 31)),
)
def test_schedule_matches_wall_clock_reference_and_change_points_are_never_late(days, start, end, tz, t):
    """is_active equals a wall-clock reference; the state is constant from t up to next_change."""
    w = MaintenanceWindow(
        "p",
        weekdays=sorted(days),
        start=f"{start // 60:02d}:{start % 60:02d}",
        end=f"{end // 60:02d}:{end % 60:02d}",
        timezone=tz,
    )
    length = (end - start) % 1440 or 1440
    day_set = {WEEKDAYS.index(d) for d in days}
    zone = ZoneInfo(tz)
    state = w.is_active(t)
    assert state == _brute_active(day_set, start, length, zone, t)
    change = w.next_change(t)
    assert change > t
    # Sample the interval [t, change): the state must not flip inside it.
    horizon = min(change, t + 9 * 86400)
    for i in range(1, 40):
        probe = t + (horizon - t) * i / 40
        if probe < change:
            assert w.is_active(probe) == state


def test_active_cache_agrees_with_windows_over_a_week():
    """ActiveCache answers exactly what the windows answer, minute by minute over a week."""
    windows = [
        MaintenanceWindow("a", weekdays=["tue"], start="02:00", end="03:00", timezone="Europe/Berlin"),
        MaintenanceWindow("b", starts_at=ts(2026, 11, 25, 10), ends_at=ts(2026, 11, 25, 10, 30)),
    ]
    cache = ActiveCache(windows)
    t = ts(2026, 11, 22)
    while t < ts(2026, 11, 29):
        assert cache.active(t) == any(w.is_active(t) for w in windows)
        t += 60
    assert ActiveCache([]).active(t) is False
