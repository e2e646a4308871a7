"""Reading a recipient CSV: one pass, constant memory, every bad row reported by number.

Row numbers are the CSV's own line numbers as a spreadsheet shows them: the header is
row 1, the first recipient row 2.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from outdial.errors import Invalid
from outdial.phones import InvalidPhoneNumber, normalize_e164

TEMPLATE_COLUMNS = ("phone_number", "name", "first_name", "last_name", "email", "company", "notes")
PHONE_ALIASES = ("phone_number", "phone", "number", "mobile", "to_number", "to")
MAX_COLUMNS = 200
csv.field_size_limit(64 * 1024)


@dataclass(frozen=True)
class GoodRow:
    row: int
    phone_number: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    row: int
    column: str | None
    reason: str
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason, "value": self.value}


@dataclass(frozen=True)
class Header:
    names: list[str]
    phone_index: int


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text) or "\x00" in text


def text_stream(binary: IO[bytes]) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM); undecodable bytes survive as surrogates, to be reported."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def read_header(reader: Iterator[list[str]], use_template: bool) -> Header:
    try:
        raw = next(reader)
    except StopIteration:
        raise Invalid(["body", "file"], "the CSV file is empty") from None
    names = [name.strip().lower() for name in raw]
    if any(_has_bad_bytes(name) for name in names):
        raise Invalid(["body", "file"], "row 1 (header): not valid UTF-8 text")
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
            f"{', '.join(PHONE_ALIASES)} (found: {', '.join(names) or 'nothing'})",
        )
    if use_template:
        unknown = [n for n in names if n not in TEMPLATE_COLUMNS]
        if unknown or phone != "phone_number":
            raise Invalid(
                ["body", "file"],
                f"row 1 (header): columns not in the template: {', '.join(unknown)}; "
                f"the template is {','.join(TEMPLATE_COLUMNS)}",
            )
    return Header(names=names, phone_index=names.index(phone))


def parse_row(
    header: Header, number: int, cells: list[str], region: str
) -> GoodRow | RowError | None:
    """A good row, a row error, or None for a blank line."""
    if not any(cell.strip() for cell in cells):
        return None
    if len(cells) > len(header.names):
        return RowError(
            number, None, f"row has {len(cells)} cells; the header has {len(header.names)}"
        )
    for name, cell in zip(header.names, cells, strict=False):
        if _has_bad_bytes(cell):
            return RowError(number, name, "bad encoding: not valid UTF-8 text")
    phone_column = header.names[header.phone_index]
    raw = cells[header.phone_index].strip() if header.phone_index < len(cells) else ""
    if not raw:
        return RowError(number, phone_column, "missing phone number")
    try:
        e164 = normalize_e164(raw, region)
    except InvalidPhoneNumber as exc:
        return RowError(number, phone_column, f"invalid number: {exc}", raw[:40])
    metadata = {
        name: cell.strip()
        for index, (name, cell) in enumerate(zip(header.names, cells, strict=False))
        if index != header.phone_index and name and cell.strip()
    }
    return GoodRow(number, e164, metadata)


def read_csv(
    binary: IO[bytes], *, region: str, use_template: bool
) -> tuple[Header, Iterator[GoodRow | RowError]]:
    """Check the header at once; rows follow lazily, one at a time."""
    stream = text_stream(binary)
    reader = csv.reader(stream)
    header = read_header(reader, use_template)

    def rows() -> Iterator[GoodRow | RowError]:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError(reader.line_num, None, f"malformed CSV: {exc}")
                continue
            result = parse_row(header, reader.line_num, cells, region)
            if result is not None:
                yield result

    return header, rows()


def template_csv() -> str:
    return ",".join(TEMPLATE_COLUMNS) + "\r\n"
