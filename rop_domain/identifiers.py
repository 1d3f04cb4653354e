"""Norwegian personal identifiers: fødselsnummer, D-nummer and synthetic test numbers.

Validation is `python-stdnum`'s, which knows the two mod-11 check digits, D-numbers
(day + 40) and H-numbers (month + 40). Synthetic numbers from the national test
data service (month + 80) are refused by stdnum; we accept them only where a
setting says so, after checking the same check digits and the birth date.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.no import fodselsnummer

_ELEVEN_DIGITS = re.compile(r"\d{11}")
_SYNTHETIC_MONTH_OFFSET = 80


class NationalIdKind(StrEnum):
    """What kind of national identity number a valid number is."""

    FODSELSNUMMER = "fodselsnummer"
    D_NUMMER = "d-nummer"
    SYNTHETIC = "synthetic"


class InvalidNationalId(ValueError):
    """The number is not a valid fødselsnummer or D-nummer; the message says why."""


def has_valid_check_digits(number: str) -> bool:
    """True if `number` is 11 digits whose two mod-11 check digits are right.

    Pure (it does not look at today's date), so it may run anywhere, including
    inside workflow code where pydantic re-validates payloads.
    """
    if not _ELEVEN_DIGITS.fullmatch(number):
        return False
    return number[9] == fodselsnummer.calc_check_digit1(number) and number[
        10
    ] == fodselsnummer.calc_check_digit2(number)


def classify_national_id(number: str, *, allow_synthetic: bool) -> NationalIdKind:
    """Validate `number` fully and say what kind it is, or raise `InvalidNationalId`."""
    if not _ELEVEN_DIGITS.fullmatch(number):
        raise InvalidNationalId("must be exactly 11 digits")
    if not has_valid_check_digits(number):
        raise InvalidNationalId("check digits do not match (not a valid fødselsnummer)")
    month = int(number[2:4])
    if month > _SYNTHETIC_MONTH_OFFSET:
        if not allow_synthetic:
            raise InvalidNationalId(
                "synthetic test numbers are not accepted here (set ROP_ALLOW_SYNTHETIC_IDS)"
            )
        real_month = f"{month - _SYNTHETIC_MONTH_OFFSET:02d}"
        _validate_birth_date(number[:2] + real_month + number[4:])
        return NationalIdKind.SYNTHETIC
    _validate_birth_date(number)
    return NationalIdKind.D_NUMMER if int(number[0]) >= 4 else NationalIdKind.FODSELSNUMMER


def _validate_birth_date(number: str) -> None:
    try:
        born = fodselsnummer.get_birth_date(number)
    except StdnumValidationError as error:
        raise InvalidNationalId(f"no valid birth date in the number ({error})") from None
    if born > date.today():  # noqa: DTZ011, TID251 - the edge only (classify_national_id); a calendar date
        raise InvalidNationalId("birth date lies in the future")
