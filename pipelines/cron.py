"""Five-field cron expressions (minute hour day-of-month month day-of-week) and their ticks.

``parse_cron`` turns ``"*/15 2-4 * * mon-fri"`` into a ``Cron`` of allowed values per field, or
raises ``CronError`` naming the field and the fix. ``Cron.previous(at, tz)`` is the latest tick
at or before ``at`` in the IANA zone ``tz`` (what a schedule's fire records as its scheduled time),
``Cron.ticks_between`` the ticks of a window (catch-up). A day fires when it matches both
day-of-month and day-of-week, as in Celery's ``crontab`` that beat fires it with (Vixie cron
would take either when both are restricted).

Wall-clock times that a DST change skips do not fire that day; repeated ones fire once (fold 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

FIELDS = (  # name, low, high
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day_of_month", 1, 31),
    ("month", 1, 12),
    ("day_of_week", 0, 6),
)
MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Searching back further than this finds nothing a schedule could mean (Feb 29 recurs within 8 years).
MAX_SEARCH_DAYS = 366 * 8 + 2


def field_text(values: frozenset[int], low: int, high: int) -> str:
    """One field as Celery's crontab reads it: ``*`` for every value, else a sorted list."""
    if values == frozenset(range(low, high + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


class CronError(ValueError):
    """A cron expression or timezone that cannot be read; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    """The allowed values of each field; ``text`` is the expression as written."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def crontab_fields(self) -> dict[str, str]:
        """The five fields in the form django-celery-beat's ``CrontabSchedule`` stores."""
        return {"minute": field_text(self.minutes, 0, 59), "hour": field_text(self.hours, 0, 23),
                "day_of_month": field_text(self.days, 1, 31), "month_of_year": field_text(self.months, 1, 12),
                "day_of_week": field_text(self.weekdays, 0, 6)}

    def fires_on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        return day.day in self.days and (day.isoweekday() % 7) in self.weekdays

    def previous(self, at: datetime, tz: str) -> datetime | None:
        """The latest tick at or before ``at`` (aware), as an aware UTC datetime; None if none."""
        zone = zone_info(tz)
        local = at.astimezone(zone)
        day = local.date()
        for _ in range(MAX_SEARCH_DAYS):
            if self.fires_on(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        tick = _real(day, hour, minute, zone)
                        if tick is not None and tick <= at:
                            return tick
            day -= timedelta(days=1)
        return None

    def ticks_between(self, start: datetime, end: datetime, tz: str, *, limit: int = 100) -> list[datetime]:
        """Ticks ``t`` with ``start < t <= end`` (aware), oldest first, at most ``limit`` (the latest)."""
        out: list[datetime] = []
        cursor = end
        while len(out) < limit:
            tick = self.previous(cursor, tz)
            if tick is None or tick <= start:
                break
            out.append(tick)
            cursor = tick - timedelta(seconds=1)
        return out[::-1]


def _real(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall time, or None when a DST change skips it."""
    local = datetime.combine(day, time(hour, minute), tzinfo=zone)
    utc = local.astimezone(timezone.utc)
    if utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return utc


def zone_info(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``CronError`` if it is not one."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"timezone {name!r} is not an IANA zone name; write e.g. 'Europe/Paris' or 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown timezone {name!r}; use an IANA zone name such as 'Europe/Paris' or 'UTC'") from None


def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_cron(text: str) -> Cron:
    """Parse five space-separated fields; names (jan, mon) and ``7`` for Sunday are accepted."""
    if not isinstance(text, str):
        raise CronError(f"cron must be a string of five fields, got {type(text).__name__}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron {text!r} has {len(parts)} field(s); write five: minute hour day-of-month "
                        "month day-of-week, e.g. '0 2 * * *'")
    values = []
    for part, (name, low, high) in zip(parts, FIELDS):
        names = MONTHS if name == "month" else WEEKDAYS if name == "day_of_week" else {}
        values.append(_field(part, name, low, high, names))
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(text=" ".join(parts), minutes=values[0], hours=values[1], days=values[2], months=values[3],
                weekdays=weekdays)


def _field(part: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    top = 7 if name == "day_of_week" else high  # 7 is Sunday too
    out: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, name, 1, high - low + 1, {})
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, low, top, names), _number(b, name, low, top, names)
            if first > last:
                raise CronError(f"cron {name} range {base!r} runs backwards; write the smaller value first")
        else:
            first = _number(base, name, low, top, names)
            last = top if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


def _number(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not key.isdigit():
        hint = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"cron {name} value {text!r} is not a number{hint}")
    value = int(key)
    if not low <= value <= high:
        raise CronError(f"cron {name} value {value} is outside {low}-{high}")
    return value
