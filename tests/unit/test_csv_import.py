"""CSV reading without a database: header rules, one row at a time, spreadsheet row numbers."""

from __future__ import annotations

import csv
import io

import pytest

from outdial.errors import Invalid
from outdial.recipient_list.csv_import import (
    PHONE_ALIASES,
    TEMPLATE_COLUMNS,
    GoodRow,
    Header,
    RowError,
    column_key,
    parse_row,
    read_csv,
    read_header,
    template_csv,
)
from outdial.recipient_list.duplicates import SeenNumbers

NUMBER = "+14155550123"


def header(line: str, use_template: bool = False) -> Header:
    return read_header(csv.reader(io.StringIO(line)), use_template)


def refusal(line: str, use_template: bool = False) -> str:
    with pytest.raises(Invalid) as caught:
        header(line, use_template)
    [problem] = caught.value.detail
    assert problem["loc"] == ["body", "file"]
    return str(problem["msg"])


def rows_of(data: bytes) -> list[GoodRow | RowError]:
    _, rows = read_csv(io.BytesIO(data), region="US", use_template=False)
    return list(rows)


# --- read_header ---------------------------------------------------------------------------


def test_header_names_are_keys_and_the_phone_column_is_found() -> None:
    found = header("Name, Phone Number ,E-Mail\n")
    assert found.names == ["name", "phone_number", "e_mail"]
    assert found.phone_index == 1
    assert found.metadata_columns == [(0, "name"), (2, "e_mail")]


@pytest.mark.parametrize("alias", PHONE_ALIASES)
def test_every_alias_names_the_phone_column(alias: str) -> None:
    assert header(f"name,{alias.upper()}\n").phone_index == 1


def test_the_first_alias_wins_when_several_are_present() -> None:
    found = header("number,phone\n")
    assert found.names[found.phone_index] == "phone"


def test_empty_input_is_refused() -> None:
    assert "empty" in refusal("")


def test_missing_phone_column_names_what_was_found() -> None:
    message = refusal("name,email\n")
    assert "missing phone column" in message
    assert "(found: name, email)" in message


def test_duplicate_columns_are_refused() -> None:
    assert "duplicate columns name" in refusal("phone,Name,name \n")


def test_too_many_columns_are_refused() -> None:
    assert "at most 200" in refusal("phone," + ",".join(f"c{i}" for i in range(200)) + "\n")


def test_template_refuses_unknown_columns_by_name() -> None:
    message = refusal("phone_number,name,shoe_size\n", use_template=True)
    assert "shoe_size" in message
    assert ",".join(TEMPLATE_COLUMNS) in message


def test_template_accepts_a_subset_and_ignores_unnamed_columns() -> None:
    assert header("phone_number,first_name,\n", use_template=True).phone_index == 0


def test_template_wants_phone_number_itself() -> None:
    assert "phone" in refusal("phone,name\n", use_template=True)


def test_template_csv_is_the_template_header() -> None:
    assert template_csv() == ",".join(TEMPLATE_COLUMNS) + "\r\n"
    assert header(template_csv(), use_template=True).phone_index == 0


def test_column_key() -> None:
    assert column_key("  First   Name ") == "first_name"
    assert column_key("last-name") == "last_name"
    assert column_key("Email") == "email"


# --- parse_row -----------------------------------------------------------------------------

HEADER = Header(names=["name", "phone_number", "notes", ""], phone_index=1)


def test_a_good_row_has_its_number_normalised_and_metadata() -> None:
    row = parse_row(HEADER, 2, [" Ann ", "(415) 555-0123", "", "ignored"], "US")
    assert row == GoodRow(2, NUMBER, {"name": "Ann"})


def test_a_short_row_is_fine() -> None:
    assert parse_row(HEADER, 2, ["Ann", NUMBER], "US") == GoodRow(2, NUMBER, {"name": "Ann"})


@pytest.mark.parametrize("cells", [[], [""], ["", " ", "\t"]])
def test_blank_rows_are_none(cells: list[str]) -> None:
    assert parse_row(HEADER, 2, cells, "US") is None


def test_extra_cells_are_an_error() -> None:
    row = parse_row(HEADER, 7, ["a", NUMBER, "c", "d", "e"], "US")
    assert row == RowError(7, None, "row has 5 cells; the header has 4")


def test_missing_phone_is_an_error_naming_the_column() -> None:
    assert parse_row(HEADER, 3, ["Ann", "  "], "US") == RowError(
        3, "phone_number", "missing phone number"
    )
    assert parse_row(HEADER, 3, ["Ann"], "US") == RowError(
        3, "phone_number", "missing phone number"
    )


def test_invalid_number_keeps_the_value_and_the_reason() -> None:
    row = parse_row(HEADER, 4, ["Ann", "+1 555 000"], "US")
    assert isinstance(row, RowError)
    assert (row.row, row.column, row.value) == (4, "phone_number", "+1 555 000")
    assert row.reason.startswith("invalid number: ")


def test_undecodable_bytes_are_an_error_in_their_column() -> None:
    bad = b"Jos\xe9".decode("utf-8", "surrogateescape")
    assert parse_row(HEADER, 5, [bad, NUMBER], "US") == RowError(
        5, "name", "bad encoding: not valid UTF-8 text"
    )
    assert parse_row(HEADER, 5, ["Ann", NUMBER, "a\x00b"], "US") == RowError(
        5, "notes", "bad encoding: not valid UTF-8 text"
    )


# --- read_csv: row numbers and decoding ---------------------------------------------------


def test_row_numbers_count_blank_rows_and_not_lines_inside_quotes() -> None:
    data = (
        b"phone,notes\r\n"  # row 1
        b"+14155550123,one\r\n"  # row 2
        b"\r\n"  # row 3 (blank)
        b'+14155550124,"two\r\nlines"\r\n'  # row 4
        b"bad,x\r\n"  # row 5
    )
    rows = rows_of(data)
    assert [r.row for r in rows] == [2, 4, 5]
    assert isinstance(rows[1], GoodRow)
    assert rows[1].metadata == {"notes": "two\r\nlines"}
    assert isinstance(rows[2], RowError)


def test_bom_is_dropped_and_bad_bytes_only_spoil_their_row() -> None:
    data = "\ufeffphone,name\n".encode() + b"+14155550123,Jos\xe9\n+14155550124,Zo\xc3\xab\n"
    first, second = rows_of(data)
    assert isinstance(first, RowError)
    assert first.column == "name"
    assert second == GoodRow(3, "+14155550124", {"name": "Zo\u00eb"})


def test_oversized_cell_is_reported_and_reading_goes_on() -> None:
    data = b"phone,notes\n+14155550123," + b"x" * (70 * 1024) + b"\n+14155550124,ok\n"
    rows = rows_of(data)
    assert isinstance(rows[0], RowError)
    assert "malformed CSV" in rows[0].reason
    assert rows[-1] == GoodRow(3, "+14155550124", {"notes": "ok"})


def test_rows_are_read_lazily() -> None:
    _, rows = read_csv(
        io.BytesIO(b"phone\n+14155550123\n" + b"nonsense\n" * 10), region="US", use_template=False
    )
    assert next(rows) == GoodRow(2, NUMBER, {})


# --- the import's filter of numbers already written ----------------------------------------


def test_seen_numbers_never_forgets_a_number() -> None:
    seen = SeenNumbers()
    written = [f"+1415{2000000 + i:07d}" for i in range(20_000)]
    for number in written:
        seen.add(number)
    assert all(seen.may_contain(number) for number in written)
    others = [f"+1416{2000000 + i:07d}" for i in range(20_000)]
    assert sum(map(seen.may_contain, others)) < 100  # false positives are rare
