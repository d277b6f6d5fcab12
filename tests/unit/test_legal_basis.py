"""The legal basis of a transfer, of a created wallet and of an imported seized key is a structured
court reference: court; case number; date."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from signerd.core.errors import InvalidArgument
from signerd.core.legal_basis import FORM, LegalBasis, given, latest_date, parse, parts

TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(("text", "court", "case", "decided"), [
    ("Regional Court Berlin; 4 K 12/26; 2026-11-20", "Regional Court Berlin", "4 K 12/26",
     date(2026, 11, 20)),
    ("  Regional Court Berlin ;4 K 12/26;2026-11-20 ", "Regional Court Berlin", "4 K 12/26",
     date(2026, 11, 20)),
    ("BGH; StR 1/99; 1999-02-28", "BGH", "StR 1/99", date(1999, 2, 28)),
    ("Court of Appeal; 2026/17-A; 2026-11-30", "Court of Appeal", "2026/17-A", TODAY),
])
def test_parses_the_three_parts_and_writes_the_canonical_form(text, court, case, decided):
    basis = parse(text, today=TODAY)
    assert basis == LegalBasis(court, case, decided)
    assert basis.text == f"{court}; {case}; {decided.isoformat()}"
    assert parse(basis.text, today=TODAY) == basis


@pytest.mark.parametrize(("text", "why"), [
    (".", "1 part separated by ';', not 3"),
    ("Judgment 4 K 12/26, final 2026-11-20", "1 part separated by ';', not 3"),
    ("Regional Court Berlin; 4 K 12/26", "2 parts separated by ';', not 3"),
    ("A; B; 2026-01-01; extra", "4 parts separated by ';', not 3"),
    (" ; 4 K 12/26; 2026-11-20", "the court is empty"),
    ("Regional Court Berlin;  ; 2026-11-20", "the case number is empty"),
    ("Regional Court Berlin; 4 K 12/26; ", "the date of the decision must be a calendar date"),
    ("Regional Court Berlin; 4 K 12/26; 20.11.2026", "must be a calendar date"),
    ("Regional Court Berlin; 4 K 12/26; 2026-02-30", "must be a calendar date"),
    ("Regional Court Berlin; 4 K 12/26; 2026-11-20T10:00", "must be a calendar date"),
    ("Regional Court Berlin; 4 K 12/26; +2026-11-20", "must be a calendar date"),
    ("Regional Court Berlin; 4 K 12/26; 2026-11-2\u0662", "must be a calendar date"),
    ("Landgericht M\u00fcnchen; 4 K 12/26; 2026-11-20", "the court must be printable ASCII"),
    ("Court\nsend 1 BTC; 4 K 12/26; 2026-11-20", "the court must be printable ASCII"),
    ("C" * 201 + "; 4 K 12/26; 2026-11-20", "the court is longer than 200 characters"),
    ("Court; " + "9" * 101 + "; 2026-11-20", "the case number is longer than 100 characters"),
])
def test_malformed_legal_basis_names_the_field_the_fault_and_the_form(text, why):
    with pytest.raises(InvalidArgument) as err:
        parse(text, today=TODAY)
    message = err.value.message
    assert message.startswith("legal_basis: ") and why in message
    assert FORM in message and "COURT; CASE NUMBER; YYYY-MM-DD" in message
    assert parts(text) is None


def test_a_decision_dated_after_today_is_refused():
    with pytest.raises(InvalidArgument, match="dated 2026-12-01, after today"):
        parse("Regional Court Berlin; 4 K 12/26; 2026-12-01", today=TODAY)
    assert parse("Regional Court Berlin; 4 K 12/26; 2026-12-01").decided == date(2026, 12, 1)


def test_the_field_name_is_the_callers():
    with pytest.raises(InvalidArgument, match="^order: "):
        parse("x", field="order")


NOON = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["", " ", "\t\n"])
def test_none_given_is_none(text):
    assert given(text, now=NOON) == ""


def test_given_is_stored_in_canonical_form():
    assert given("  BGH ;StR 1/99;1999-02-28 ", now=NOON) == "BGH; StR 1/99; 1999-02-28"
    assert given("BGH; StR 1/99; 1999-02-28") == "BGH; StR 1/99; 1999-02-28"  # the clock's now


@pytest.mark.parametrize("text", ["order 7", "Regional Court Berlin, 4 K 12/26",
                                  "Regional Court Berlin; 4 K 12/26; 30.11.2026"])
def test_free_text_given_is_refused_naming_the_field_and_the_form(text):
    with pytest.raises(InvalidArgument) as err:
        given(text, field="legal_basis", now=NOON)
    assert err.value.message.startswith("legal_basis: ") and FORM in err.value.message


def test_a_decision_may_be_dated_today_anywhere_on_earth():
    # At noon UTC it is already the next day east of UTC+12: that date passes, no later one.
    assert latest_date(NOON) == date(2026, 12, 1)
    assert latest_date(NOON.astimezone(timezone(timedelta(hours=-10)))) == date(2026, 12, 1)
    assert given("Court; 1 A 1/26; 2026-12-01", now=NOON) == "Court; 1 A 1/26; 2026-12-01"
    with pytest.raises(InvalidArgument, match="dated 2026-12-02, after today"):
        given("Court; 1 A 1/26; 2026-12-02", now=NOON)
