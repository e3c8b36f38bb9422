"""Due dates in speech: our own patterns find the phrase, then rules or dateparser resolve it against the call's start.

Why not `dateparser.search.search_dates` over the whole sentence: it reads "we" as Wednesday and "may" as a month
(NOTES.md). We find phrases with the patterns below and parse only those, with `RELATIVE_BASE` = the call's start and
`PREFER_DATES_FROM = "future"`. Phrases dateparser does not know ("EOD", "end of month", "Q2", "next week" as a
deadline) have rules of their own.

Conventions (the gold set in tests/ai/ is annotated with them): a deadline without a time of day is due at 17:00 in
the call's timezone; "next week" means by the end of next week (Friday); "end of week" is this Friday; "end of month"
and "Qn" are their last day; "EOD" is the call's day (23:59 if the call started after 17:00).
"""

from __future__ import annotations

import calendar
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import dateparser

_END_OF_BUSINESS = time(17, 0)
_LATE = time(23, 59)
# dateparser caches per-language data lazily and has had thread-safety bugs around that; the ai worker is threaded.
_dateparser_lock = threading.Lock()

_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "a couple of": 2, "few": 3, "a few": 3,
}  # fmt: skip
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_COUNT = r"(?P<count>\d{1,3}|a couple of|couple of|a few|few|an?|one|two|three|four|five|six|seven|eight|nine|ten)"
_TIME = r"(?:\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.))"

# Order matters only for readability: the earliest match in the text wins, then the longest.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # "EOD tomorrow", "end of day Friday", "tomorrow EOD": the end of that day, not of today.
    (
        "eod_of_day",
        re.compile(
            rf"\b(?:eod|cob|end of (?:the )?(?:business )?day|close of business)\s+(?:on\s+)?"
            rf"(?P<day>tomorrow|{_WEEKDAY})\b"
        ),
    ),
    (
        "eod_of_day",
        re.compile(
            rf"\b(?P<day>tomorrow|{_WEEKDAY})\s+(?:eod|cob|end of (?:the )?(?:business )?day|"
            rf"close of business)\b"
        ),
    ),
    ("eod", re.compile(r"\b(?:eod|cob|end of (?:the )?(?:business )?day|close of business|by tonight|tonight)\b")),
    ("today", re.compile(r"\b(?:later )?today\b|\bthis (?:morning|afternoon|evening)\b")),
    ("eow", re.compile(r"\b(?:eow|end of (?:the |this )?week|later this week|this week)\b")),
    ("eom", re.compile(r"\b(?:eom|end of (?:the |this )?month|month[- ]end)\b")),
    ("end_of_month_name", re.compile(rf"\bend of (?P<month>{_MONTH})\b")),
    ("next_quarter", re.compile(r"\b(?:next quarter)\b")),
    ("eoq", re.compile(r"\b(?:eoq|end of (?:the |this )?quarter|quarter[- ]end)\b")),
    ("quarter", re.compile(r"\b(?:end of )?q(?P<quarter>[1-4])\b")),
    ("early_next_week", re.compile(r"\b(?:early next week|first thing next week|beginning of next week)\b")),
    ("next_week", re.compile(r"\bnext week\b")),
    ("next_month", re.compile(r"\bnext month\b")),
    ("relative", re.compile(rf"\b(?:in|within)\s+(?:the\s+next\s+)?{_COUNT}\s+(?P<unit>hour|day|week|month)s?\b")),
    (
        "dateparser",
        re.compile(
            rf"\b(?:tomorrow|day after tomorrow)(?:\s+(?:morning|afternoon|evening))?"
            rf"(?:\s+(?:at|by)\s+{_TIME})?\b"
        ),
    ),
    (
        "dateparser",
        re.compile(
            rf"\b(?:(?:this|next|on|by|before)\s+)?{_WEEKDAY}\b(?:\s+(?:morning|afternoon|evening))?"
            rf"(?:\s+(?:at|by)\s+{_TIME})?"
        ),
    ),
    ("dateparser", re.compile(rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?!:)")),
    ("dateparser", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b")),
    ("dateparser", re.compile(r"\bthe \d{1,2}(?:st|nd|rd|th)\b")),
    ("dateparser", re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b")),
]
_LEADING_WORDS = re.compile(r"^(?:on|by|before)\s+")
_HAS_TIME = re.compile(_TIME)


@dataclass(frozen=True)
class DueDate:
    phrase: str
    due_at: datetime
    rule: str


def find_due_phrase(text: str) -> tuple[str, str] | None:
    """The first deadline phrase in `text` as (rule, phrase), or None."""
    lowered = text.lower()
    best: tuple[int, int, str, str] | None = None
    for rule, pattern in _PATTERNS:
        match = pattern.search(lowered)
        if match is None:
            continue
        key = (match.start(), -(match.end() - match.start()))
        if best is None or key < (best[0], best[1]):
            best = (key[0], key[1], rule, match.group(0).strip())
    return None if best is None else (best[2], best[3])


def resolve_due(text: str, call_started_at: datetime) -> DueDate | None:
    """The deadline a sentence states, resolved relative to the call's start, or None when it states none."""
    if call_started_at.tzinfo is None:
        raise ValueError("call_started_at must be timezone-aware")
    found = find_due_phrase(text)
    if found is None:
        return None
    rule, phrase = found
    due_at = _resolve(rule, phrase, call_started_at)
    return None if due_at is None else DueDate(phrase=phrase, due_at=due_at, rule=rule)


def resolve_phrase(phrase: str, call_started_at: datetime) -> datetime | None:
    """Resolve a phrase a model quoted (e.g. "by Friday"): our patterns first, then dateparser on the whole phrase."""
    found = resolve_due(phrase, call_started_at)
    if found is not None:
        return found.due_at
    return _parse_with_dateparser(_LEADING_WORDS.sub("", phrase.lower().strip()), call_started_at)


def _at(day: date, base: datetime, at: time = _END_OF_BUSINESS) -> datetime:
    return datetime.combine(day, at, tzinfo=base.tzinfo)


def _friday_of(day: date) -> date:
    return day + timedelta(days=(4 - day.weekday()) % 7)


def _last_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _quarter_end(year: int, quarter: int) -> date:
    return _last_of_month(year, quarter * 3)


def _resolve(rule: str, phrase: str, base: datetime) -> datetime | None:
    today = base.date()
    if rule == "eod_of_day":
        day = re.sub(r"\b(?:eod|cob|end of (?:the )?(?:business )?day|close of business|on)\b", "", phrase).strip()
        parsed = _parse_with_dateparser(day, base)
        return None if parsed is None else _at(parsed.date(), base)
    if rule in {"eod", "today"}:
        return _at(today, base, _LATE if base.timetz().replace(tzinfo=None) >= _END_OF_BUSINESS else _END_OF_BUSINESS)
    if rule == "eow":
        return _at(_friday_of(today) if today.weekday() <= 4 else _friday_of(today + timedelta(days=3)), base)
    if rule == "eom":
        return _at(_last_of_month(today.year, today.month), base)
    if rule == "end_of_month_name":
        month_match = re.search(_MONTH, phrase.split("of", 1)[1])
        assert month_match is not None
        month = _month_number(month_match.group(0))
        year = today.year if month >= today.month else today.year + 1
        return _at(_last_of_month(year, month), base)
    if rule == "eoq":
        return _at(_quarter_end(today.year, (today.month - 1) // 3 + 1), base)
    if rule == "next_quarter":
        current = (today.month - 1) // 3 + 1
        year, quarter = (today.year, current + 1) if current < 4 else (today.year + 1, 1)
        return _at(_quarter_end(year, quarter), base)
    if rule == "quarter":
        quarter = int(re.search(r"[1-4]", phrase).group(0))  # type: ignore[union-attr]
        end = _quarter_end(today.year, quarter)
        return _at(end if end >= today else _quarter_end(today.year + 1, quarter), base)
    monday_next = today + timedelta(days=7 - today.weekday())
    if rule == "early_next_week":
        return _at(monday_next, base)
    if rule == "next_week":
        return _at(monday_next + timedelta(days=4), base)
    if rule == "next_month":
        year, month = (today.year, today.month + 1) if today.month < 12 else (today.year + 1, 1)
        return _at(_last_of_month(year, month), base)
    if rule == "relative":
        match = re.search(rf"{_COUNT}\s+(?P<unit>hour|day|week|month)", phrase)
        assert match is not None
        raw = match.group("count")
        count = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
        unit = match.group("unit")
        if unit == "hour":
            return base + timedelta(hours=count)
        days = {"day": 1, "week": 7, "month": 30}[unit] * count
        return _at(today + timedelta(days=days), base)
    return _parse_with_dateparser(_LEADING_WORDS.sub("", phrase), base)


def _month_number(name: str) -> int:
    for number in range(1, 13):
        if calendar.month_name[number].lower().startswith(name[:3]):
            return number
    raise ValueError(name)


def _parse_with_dateparser(phrase: str, base: datetime) -> datetime | None:
    settings = {
        "RELATIVE_BASE": base.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    with _dateparser_lock:
        parsed = dateparser.parse(phrase, languages=["en"], settings=settings)  # type: ignore[arg-type]
    if parsed is None:
        return None
    if _HAS_TIME.search(phrase) or any(part in phrase for part in ("morning", "afternoon", "evening")):
        return parsed.replace(tzinfo=base.tzinfo)
    # A day without a time of day: due at the end of that business day in the call's timezone.
    return _at(parsed.date(), base)
