"""E.164 normalisation with `phonenumbers`, fast enough for million-row imports.

`phonenumbers.parse` + `is_valid_number` cost about 25 µs a number: 25 s of a million-row
import. Two shortcuts give the library's answers for a fraction of that:

- Input that is only digits, an optional leading `+` and the usual separators (spaces,
  dashes, dots, parentheses) skips `parse` when nothing in it could be read two ways: no
  leading zero, no national or international dialling prefix that `parse` might strip, and,
  without `+`, no leading country code. Anything else goes to `parse`.
- `is_valid` is `phonenumbers.is_valid_number` with each region's patterns compiled once
  and the common types (fixed line, mobile) tried first. The library's rule is unchanged: a
  number is valid when it matches its region's general pattern and one type's pattern, the
  region being the first of its calling code's regions whose leading digits match or whose
  patterns accept it.

tests/unit/test_phones.py checks both against the plain library calls, region by region.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberDesc

_SEPARATORS = str.maketrans("", "", " ().-")
_PLAIN = re.compile(r"(\+?)([1-9][0-9]{3,16})")
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


class InvalidPhoneNumber(ValueError):
    pass


def normalize_e164(raw: str, default_region: str) -> str:
    """Return `raw` as E.164, or raise InvalidPhoneNumber with a reason a person can act on."""
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("phone number is empty")
    if len(text) > 40:
        raise InvalidPhoneNumber("phone number is too long")
    plain = _PLAIN.fullmatch(text.translate(_SEPARATORS))
    if plain is not None:
        number = _read_plain(plain[2], default_region, international=bool(plain[1]))
        if number is not None and _is_valid_nsn(*number):
            return f"+{number[0]}{number[1]}"
    try:
        parsed = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number ({exc._msg})") from None
    if not is_valid(parsed):
        raise InvalidPhoneNumber(f"{text!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_valid(number: PhoneNumber) -> bool:
    """Exactly `phonenumbers.is_valid_number(number)`, faster."""
    if number.country_code is None:
        return False
    return _is_valid_nsn(number.country_code, phonenumbers.national_significant_number(number))


def _read_plain(digits: str, default_region: str, international: bool) -> tuple[int, str] | None:
    """(calling code, national number) as `parse` would read these digits, or None when
    `parse` might read them otherwise (then it decides)."""
    if international:
        for length in (1, 2, 3):
            country_code = _CALLING_CODES.get(digits[:length])
            if country_code is not None:
                break
        else:
            return None
        national, region = digits[length:], _regions(country_code)[0]
    else:
        region = _region_named(default_region)
        if region is None or region.international_prefix is None:
            return None
        if region.international_prefix.match(digits) or digits.startswith(region.code_digits):
            return None
        country_code, national = region.country_code, digits
    if region is None or len(national) < 2 or national[0] == "0":
        return None
    if region.national_prefix is not None and region.national_prefix.match(national):
        return None
    return country_code, national


def _is_valid_nsn(country_code: int, nsn: str) -> bool:
    regions = _regions(country_code)
    if len(regions) == 1:
        return regions[0] is not None and regions[0].accepts(nsn)
    for region in regions:  # as phonenumbers.region_code_for_number picks the region
        if region is None:
            continue
        if region.leading_digits is not None:
            if region.leading_digits.match(nsn):
                return region.accepts(nsn)
        elif region.accepts(nsn):
            return True
    return False


_Desc = tuple[frozenset[int], re.Pattern[str]]


@dataclass(frozen=True)
class _Region:
    """One region's patterns, compiled."""

    country_code: int
    general: _Desc | None
    types: tuple[_Desc, ...]
    leading_digits: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None

    @property
    def code_digits(self) -> str:
        return str(self.country_code)

    def accepts(self, nsn: str) -> bool:
        return _matches(nsn, self.general) and any(_matches(nsn, desc) for desc in self.types)


def _matches(nsn: str, desc: _Desc | None) -> bool:
    if desc is None:
        return False
    lengths, pattern = desc
    return (not lengths or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


@functools.cache
def _regions(country_code: int) -> tuple[_Region | None, ...]:
    """The calling code's regions in the library's order, the main one first."""
    codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    return tuple(_region(country_code, code) for code in codes) or (None,)


@functools.cache
def _region_named(code: str) -> _Region | None:
    """A region by its code (`US`), as `parse` uses the default region; None if unknown."""
    metadata = PhoneMetadata.metadata_for_region(code.upper(), None)
    if metadata is None or metadata.country_code is None:
        return None
    return _region(metadata.country_code, code.upper())


def _region(country_code: int, code: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, code)
    if metadata is None:
        return None
    kinds = [metadata.fixed_line]
    if not metadata.same_mobile_and_fixed_line_pattern:  # the library skips mobile then
        kinds.append(metadata.mobile)
    kinds += [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    ]
    return _Region(
        country_code=country_code,
        general=_desc(metadata.general_desc),
        types=tuple(desc for desc in map(_desc, kinds) if desc is not None),
        leading_digits=_compiled(metadata.leading_digits),
        national_prefix=_compiled(metadata.national_prefix_for_parsing),
        international_prefix=_compiled(metadata.international_prefix),
    )


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None
