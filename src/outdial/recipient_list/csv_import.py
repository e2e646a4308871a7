"""Reading a recipient CSV: one pass, constant memory, every bad row reported by number.

Row numbers are the rows a spreadsheet shows: the header is row 1, the first recipient row
2, a blank line is a row, and a quoted cell spanning several lines is still one row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from outdial.errors import Invalid
from outdial.phones import InvalidPhoneNumber, normalize_e164

TEMPLATE_COLUMNS = ("phone_number", "name", "first_name", "last_name", "email", "company", "notes")
# The first of these the header names is the phone column.
PHONE_ALIASES = (
    "phone_number",
    "phone",
    "number",
    "mobile",
    "mobile_number",
    "cell",
    "telephone",
    "to_number",
    "to",
)
MAX_COLUMNS = 200
csv.field_size_limit(64 * 1024)

# Undecodable bytes survive decoding as lone surrogates (see text_stream); NUL is unstorable.
_BAD_TEXT = re.compile("[\x00\udc80-\udcff]")
_SEPARATORS = re.compile(r"[\s\-]+")


class GoodRow(NamedTuple):
    row: int
    phone_number: str
    metadata: dict[str, Any]


class RowError(NamedTuple):
    row: int
    column: str | None
    reason: str
    value: str | None = None


@dataclass(frozen=True)
class Header:
    names: list[str]
    phone_index: int

    @property
    def metadata_columns(self) -> list[tuple[int, str]]:
        """(index, name) of the columns that become metadata: all named ones but the phone."""
        return [(i, n) for i, n in enumerate(self.names) if n and i != self.phone_index]


def text_stream(binary: IO[bytes]) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM); undecodable bytes survive as surrogates, to be reported."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def column_key(name: str) -> str:
    """A header cell as a metadata key templates can name: `First Name` → `first_name`."""
    return _SEPARATORS.sub("_", name.strip().lower())


def read_header(reader: Iterator[list[str]], use_template: bool) -> Header:
    try:
        raw = next(reader)
    except StopIteration:
        raise Invalid(["body", "file"], "the CSV file is empty") from None
    if any(_BAD_TEXT.search(cell) for cell in raw):
        raise Invalid(["body", "file"], "row 1 (header): not valid UTF-8 text")
    names = [column_key(cell) for cell in raw]
    if len(names) > MAX_COLUMNS:
        raise Invalid(["body", "file"], f"the CSV has {len(names)} columns; at most {MAX_COLUMNS}")
    duplicates = sorted({n for n in names if names.count(n) > 1 and n})
    if duplicates:
        raise Invalid(
            ["body", "file"], f"row 1 (header): duplicate columns {', '.join(duplicates)}"
        )
    phone = next((alias for alias in PHONE_ALIASES if alias in names), None)
    if phone is None:
        raise Invalid(
            ["body", "file"],
            "row 1 (header): missing phone column; name one of "
            f"{', '.join(PHONE_ALIASES)} (found: {', '.join(n for n in names if n) or 'nothing'})",
        )
    if use_template:
        unknown = [n for n in names if n and n not in TEMPLATE_COLUMNS]
        if unknown:
            raise Invalid(
                ["body", "file"],
                f"row 1 (header): columns not in the template: {', '.join(unknown)}; "
                f"the template is {','.join(TEMPLATE_COLUMNS)}",
            )
    return Header(names=names, phone_index=names.index(phone))


class RowParser:
    """Turns the cells of one row into a GoodRow, a RowError, or None for a blank row."""

    def __init__(self, header: Header, region: str) -> None:
        self.names = header.names
        self.phone_index = header.phone_index
        self.phone_column = header.names[header.phone_index]
        self.metadata_columns = header.metadata_columns
        self.region = region

    def __call__(self, number: int, cells: list[str]) -> GoodRow | RowError | None:
        joined = "".join(cells)
        if not joined.strip():
            return None
        if len(cells) > len(self.names):
            return RowError(
                number, None, f"row has {len(cells)} cells; the header has {len(self.names)}"
            )
        if (not joined.isascii() or "\x00" in joined) and _BAD_TEXT.search(joined):
            column = next(n for n, c in zip(self.names, cells, strict=False) if _BAD_TEXT.search(c))
            return RowError(number, column, "bad encoding: not valid UTF-8 text")
        raw = cells[self.phone_index].strip() if self.phone_index < len(cells) else ""
        if not raw:
            return RowError(number, self.phone_column, "missing phone number")
        try:
            e164 = normalize_e164(raw, self.region)
        except InvalidPhoneNumber as exc:
            return RowError(number, self.phone_column, f"invalid number: {exc}", raw[:40])
        width = len(cells)
        metadata = {
            name: value
            for index, name in self.metadata_columns
            if index < width and (value := cells[index].strip())
        }
        return GoodRow(number, e164, metadata)


def parse_row(
    header: Header, number: int, cells: list[str], region: str
) -> GoodRow | RowError | None:
    """A good row, a row error, or None for a blank row."""
    return RowParser(header, region)(number, cells)


def read_csv(
    binary: IO[bytes], *, region: str, use_template: bool
) -> tuple[Header, Iterator[GoodRow | RowError]]:
    """Check the header at once; rows follow lazily, one at a time."""
    reader = csv.reader(text_stream(binary))
    header = read_header(reader, use_template)
    parse = RowParser(header, region)

    def rows() -> Iterator[GoodRow | RowError]:
        number = 1
        while True:
            number += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError(number, None, f"malformed CSV: {exc}")
                continue
            result = parse(number, cells)
            if result is not None:
                yield result

    return header, rows()


def template_csv() -> str:
    return ",".join(TEMPLATE_COLUMNS) + "\r\n"
