"""An execution's timeline as a waterfall: one bar per step shard on one shared time axis.

Pure arithmetic over `executions.selectors.execution_timeline` (no queries): the axis runs from the
run's start (or its first step's) to its finish (or `now` while it runs, or the last step's end);
each bar's `left` and `width` are percentages of that axis, so bars compare across rows. A
retried shard is one bar cut into one segment per attempt; compensations follow the steps, on the
same axis. A bar too short to see is widened to `MIN_WIDTH_PCT` (its `duration_ms` stays exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MIN_WIDTH_PCT = 0.4
TICKS = 5


@dataclass(frozen=True)
class Segment:
    attempt: int
    status: str
    left: float
    width: float
    duration_ms: int | None


@dataclass(frozen=True)
class Bar:
    node_id: str
    shard: int  # from 0, as in the API
    shard_count: int
    status: str
    compensation: bool
    left: float  # percent of the axis
    width: float
    duration_ms: int | None
    attempts: int
    segments: tuple[Segment, ...]
    entry: dict[str, Any] = field(compare=False, repr=False)  # the timeline entry: input, output, error, ...

    @property
    def started(self) -> bool:
        return self.entry.get("started_at") is not None


@dataclass(frozen=True)
class Waterfall:
    start: datetime | None
    end: datetime | None
    span_ms: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, int], ...]  # (percent, milliseconds from the start)


def _ms(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds() * 1000)


def _edges(entry: dict[str, Any]) -> list[datetime]:
    out = [entry.get("started_at"), entry.get("finished_at")]
    out += [a.get("started_at") for a in entry.get("attempt_history") or ()]
    out += [a.get("finished_at") for a in entry.get("attempt_history") or ()]
    return [t for t in out if t is not None]


def waterfall(timeline: dict[str, Any], *, now: datetime) -> Waterfall:
    entries = [(e, False) for e in timeline.get("steps", ())] + [(e, True) for e in timeline.get("compensations", ())]
    times = [t for e, _ in entries for t in _edges(e)]
    start = timeline.get("started_at") or (min(times) if times else None)
    if start is None:
        return Waterfall(None, None, 0, tuple(_bar(e, c, None, 1, now) for e, c in entries), ())
    end = timeline.get("finished_at") or (now if entries or timeline.get("status") == "running" else start)
    if times:
        end = max(end, max(times))
    span = max(_ms(start, end), 1)
    ticks = tuple((round(100 * i / (TICKS - 1), 2), round(span * i / (TICKS - 1))) for i in range(TICKS))
    return Waterfall(start, end, span, tuple(_bar(e, c, start, span, now) for e, c in entries), ticks)


def _place(begin: datetime | None, finish: datetime | None, start: datetime | None, span: int, now: datetime):
    if begin is None or start is None:
        return 0.0, 0.0
    finish = finish or now
    left = min(max(_ms(start, begin) / span * 100, 0.0), 100.0)
    width = max(_ms(begin, finish) / span * 100, 0.0)
    return round(left, 3), round(min(width, 100.0 - left), 3)


def _bar(entry: dict[str, Any], compensation: bool, start, span: int, now: datetime) -> Bar:
    left, width = _place(entry.get("started_at"), entry.get("finished_at"), start, span, now)
    segments = []
    for attempt in entry.get("attempt_history") or ():
        a_left, a_width = _place(attempt.get("started_at"), attempt.get("finished_at"), start, span, now)
        segments.append(Segment(attempt.get("attempt", 0), attempt.get("status", ""), a_left,
                                max(a_width, MIN_WIDTH_PCT) if attempt.get("started_at") else 0.0,
                                attempt.get("duration_ms")))
    duration = entry.get("duration_ms")
    if duration is None and entry.get("started_at") is not None and start is not None:
        duration = _ms(entry["started_at"], entry.get("finished_at") or now)
    return Bar(
        node_id=entry["node_id"], shard=entry["shard"], shard_count=entry["shard_count"], status=entry["status"],
        compensation=compensation, left=left,
        width=max(width, MIN_WIDTH_PCT) if entry.get("started_at") is not None else 0.0,
        duration_ms=duration, attempts=entry.get("attempts", len(segments)), segments=tuple(segments), entry=entry,
    )
