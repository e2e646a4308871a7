"""E.164 normalisation with `phonenumbers`, fast enough for million-row imports.

`phonenumbers.parse` + `is_valid_number` cost about 25 µs a number: 25 s of a million-row
import. Two shortcuts give the library's answers for a fraction of that:

- Input already written as E.164 (`+` and digits) skips `parse` when nothing in it could be
  read two ways: no leading zero and no national prefix that `parse` might strip.
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

_E164_SHAPE = re.compile(r"\+([1-9]\d{6,14})")
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
    shaped = _E164_SHAPE.fullmatch(text)
    if shaped and _is_plain_valid_e164(shaped[1]):
        return text
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


def _is_plain_valid_e164(digits: str) -> bool:
    """True when `parse("+" + digits)` keeps every digit and the number is valid.

    False means "ask `parse`": the number may be invalid, or `parse` may read it otherwise.
    """
    for length in (1, 2, 3):
        country_code = _CALLING_CODES.get(digits[:length])
        if country_code is not None:
            break
    else:
        return False
    national = digits[length:]
    main = _regions(country_code)[0]
    if main is None or len(national) < 2 or national[0] == "0":
        return False
    if main.national_prefix is not None and main.national_prefix.match(national):
        return False
    return _is_valid_nsn(country_code, national)


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
    """One region's validation patterns, compiled."""

    general: _Desc | None
    types: tuple[_Desc, ...]
    leading_digits: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None

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
    prefix = metadata.national_prefix_for_parsing
    return _Region(
        general=_desc(metadata.general_desc),
        types=tuple(desc for desc in map(_desc, kinds) if desc is not None),
        leading_digits=re.compile(metadata.leading_digits) if metadata.leading_digits else None,
        national_prefix=re.compile(prefix) if prefix else None,
    )


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)
