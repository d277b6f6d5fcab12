"""The legal basis of an act: a structured reference to a court decision, not free text. A
transfer's, a created wallet's and an imported seized key's are all given in this form (or not
at all, where none is required) and stored in its canonical form. Pure: no I/O; the caller
passes today's date, or :func:`given` reads the clock.

Its one written form, which the approval statement binds and every tool parses the same way, is
three parts separated by semicolons::

    COURT; CASE NUMBER; YYYY-MM-DD
    Regional Court Berlin; 4 K 12/26; 2026-11-20

the court that decided, its case number (file reference) and the date of the decision. Each
part is printable ASCII without a semicolon; the court and the case number are at most
:data:`MAX_COURT` and :data:`MAX_CASE` characters; the date is a real calendar date, not after
today. Spaces around the parts do not count: :func:`parse` returns the parts trimmed and
:meth:`LegalBasis.text` the canonical form, which is what signerd stores.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from .errors import InvalidArgument

FORM = "'COURT; CASE NUMBER; YYYY-MM-DD' (e.g. 'Regional Court Berlin; 4 K 12/26; 2026-11-20')"
MAX_COURT = 200
MAX_CASE = 100
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class LegalBasis:
    court: str
    case_number: str
    decided: date

    @property
    def text(self) -> str:
        """The canonical written form."""
        return f"{self.court}; {self.case_number}; {self.decided.isoformat()}"


def _part(value: str, name: str, limit: int, field: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgument(f"{field}: the {name} is empty; expected {FORM}")
    if len(text) > limit:
        raise InvalidArgument(f"{field}: the {name} is longer than {limit} characters; "
                              f"expected {FORM}")
    if not (text.isascii() and text.isprintable()):
        raise InvalidArgument(f"{field}: the {name} must be printable ASCII; expected {FORM}")
    return text


def parse(text: str, *, today: date | None = None, field: str = "legal_basis") -> LegalBasis:
    """The parts of a legal basis, or InvalidArgument naming ``field``, what is wrong and the
    expected form. With ``today``, a decision dated after it is refused."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{field}: must be text; expected {FORM}")
    parts = text.split(";")
    if len(parts) != 3:
        raise InvalidArgument(f"{field}: {len(parts)} part{'' if len(parts) == 1 else 's'} "
                              f"separated by ';', not 3; expected {FORM}")
    court = _part(parts[0], "court", MAX_COURT, field)
    case = _part(parts[1], "case number", MAX_CASE, field)
    raw_date = parts[2].strip()
    decided = None
    if _DATE.fullmatch(raw_date):
        try:
            decided = date.fromisoformat(raw_date)
        except ValueError:
            pass
    if decided is None:
        raise InvalidArgument(f"{field}: the date of the decision must be a calendar date "
                              f"YYYY-MM-DD; expected {FORM}")
    if today is not None and decided > today:
        raise InvalidArgument(f"{field}: the decision is dated {decided.isoformat()}, after "
                              f"today ({today.isoformat()})")
    return LegalBasis(court, case, decided)


def parts(text: str) -> LegalBasis | None:
    """The parts of a stored legal basis, or None when it is not in the structured form (one
    stored before the form was required): for display only."""
    try:
        return parse(text)
    except InvalidArgument:
        return None


def latest_date(now: datetime) -> date:
    """The latest date a decision may bear at ``now``: it may be dated today anywhere on earth,
    so up to one day after today in UTC."""
    return (now.astimezone(timezone.utc) + timedelta(days=1)).date()


def given(text: str, *, field: str = "legal_basis", now: datetime | None = None) -> str:
    """A legal basis given with a request, in its canonical form; "" when none is given (empty
    or blank). Otherwise InvalidArgument naming ``field``, what is wrong and the expected form,
    also for a decision dated after :func:`latest_date` (of ``now``, by default the clock's)."""
    if isinstance(text, str) and not text.strip():
        return ""
    when = now if now is not None else datetime.now(timezone.utc)
    return parse(text, today=latest_date(when), field=field).text
