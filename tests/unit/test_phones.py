"""E.164 normalisation: the reasons people see, and the shortcuts against the plain library."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from outdial.phones import InvalidPhoneNumber, is_valid, normalize_e164

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
FORMATS = [
    PhoneNumberFormat.E164,
    PhoneNumberFormat.INTERNATIONAL,
    PhoneNumberFormat.NATIONAL,
    PhoneNumberFormat.RFC3966,
]


def library_e164(text: str, region: str) -> str | None:
    """What plain `phonenumbers` says: the E.164 form, or None when not a valid number."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def ours(text: str, region: str) -> str | None:
    try:
        return normalize_e164(text, region)
    except InvalidPhoneNumber:
        return None


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550123", "US", "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("1 415 555 0123", "US", "+14155550123"),
        ("  +1 415-555-0123  ", "GB", "+14155550123"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("+4402079460958", "US", "+442079460958"),  # national prefix written after the code
        ("+39 06 6982 0000", "US", "+390669820000"),  # Italy keeps its leading zero
        ("+16135550123", "US", "+16135550123"),  # Canada shares +1 with the US
        ("tel:+1-415-555-0123", "US", "+14155550123"),
        ("+8005550123", "US", None),
    ],
)
def test_examples(raw: str, region: str, expected: str | None) -> None:
    assert ours(raw, region) == expected
    assert library_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("+1" + "2" * 40, "too long"),
        ("hello", "not a phone number"),
        ("+1 555 000", "not a valid phone number"),
        ("+999 1234567", "not a phone number"),
        ("+14155550123 ext 12x", "not a valid phone number"),
    ],
)
def test_reasons_for_refusal(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason):
        normalize_e164(raw, "US")


def test_every_regions_example_numbers_agree_with_the_library() -> None:
    checked = 0
    for region in REGIONS:
        for kind in TYPES:
            example_number = phonenumbers.example_number_for_type(region, kind)
            if example_number is None:
                continue
            assert is_valid(example_number) == phonenumbers.is_valid_number(example_number)
            text = phonenumbers.format_number(example_number, PhoneNumberFormat.E164)
            assert ours(text, "US") == library_e164(text, "US"), (region, kind, text)
            checked += 1
    assert checked > 500


@st.composite
def valid_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """A valid number of any region and type: an example number with some digits changed."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(st.sampled_from(TYPES))
    base = phonenumbers.example_number_for_type(region, kind)
    assume(base is not None)
    digits = list(phonenumbers.national_significant_number(base))
    for index in draw(st.lists(st.integers(1, len(digits) - 1), max_size=3)):
        digits[index] = str(draw(st.integers(0, 9)))
    text = "+" + str(base.country_code) + "".join(digits)
    number = phonenumbers.parse(text, None)
    assume(phonenumbers.is_valid_number(number))
    return number


@settings(max_examples=300, deadline=None)
@given(valid_numbers(), st.sampled_from(FORMATS))
def test_any_valid_number_in_any_format_normalises_to_its_e164(
    number: phonenumbers.PhoneNumber, style: int
) -> None:
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number)
    assume(region not in (None, "001") or style != PhoneNumberFormat.NATIONAL)
    text = phonenumbers.format_number(number, style)
    assert normalize_e164(text, region if region != "001" else "US") == e164


@st.composite
def written_by_people(draw: st.DrawFn) -> tuple[str, str]:
    """A valid number as people write it (any format, separators moved, a digit changed) and
    the region it is read in."""
    number = draw(valid_numbers())
    own = phonenumbers.region_code_for_number(number)
    region = draw(st.sampled_from([own if own not in (None, "001") else "US", "US", "GB", "IN"]))
    text = list(phonenumbers.format_number(number, draw(st.sampled_from(FORMATS[:3]))))
    for _ in range(draw(st.integers(0, 3))):
        text.insert(draw(st.integers(0, len(text))), draw(st.sampled_from(" ()-.+0123456789")))
    for index in draw(st.lists(st.integers(0, 40), max_size=2)):
        if text:
            del text[index % len(text)]
    return "".join(text), region


@settings(max_examples=1500, deadline=None)
@given(written_by_people())
@example(("(415) 555-0123", "US"))
@example(("1 (415) 555-0123", "US"))
@example(("011 44 20 7946 0958", "US"))
@example(("(+1) 415 555 0123", "GB"))
@example(("020 7946 0958", "GB"))
@example(("415 555 0123", "CA"))
@example(("- 415 555 0123 -", "US"))
def test_numbers_as_people_write_them_get_the_librarys_answer(case: tuple[str, str]) -> None:
    text, region = case
    assert ours(text, region) == library_e164(text, region)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True), st.sampled_from(["US", "GB", "IN"]))
@example("+4402079460958", "US")
@example("+5491123456789", "US")
@example("+390669820000", "US")
@example("+79123456789", "US")
@example("+4741234567", "US")
def test_e164_shaped_input_gets_the_librarys_answer(text: str, region: str) -> None:
    assert ours(text, region) == library_e164(text, region)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.from_regex(r"[0-9]{2,15}", fullmatch=True),
)
def test_is_valid_is_the_librarys_is_valid_number(country_code: int, national: str) -> None:
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    if national.startswith("0"):
        number.italian_leading_zero = True
        number.number_of_leading_zeros = len(national) - len(national.lstrip("0")) or None
    assert is_valid(number) == phonenumbers.is_valid_number(number)
