"""Benchmark inputs: CSV files of distinct, valid North American numbers."""

from __future__ import annotations

import csv
from pathlib import Path

# Area codes in the US and Canada; every exchange 200..999 in them is valid for phonenumbers.
AREA_CODES = (212, 312, 415, 617, 202, 303, 503, 713, 416, 604)


def phone_number(index: int, style: str = "e164") -> str:
    """The index-th number: area codes take turns, then exchanges and lines count up."""
    area = AREA_CODES[index % len(AREA_CODES)]
    rest = index // len(AREA_CODES)
    exchange, line = 200 + rest // 10_000, rest % 10_000
    if style == "national":
        return f"({area}) {exchange}-{line:04d}"
    return f"+1{area}{exchange}{line:04d}"


def write_csv(path: Path, rows: int, style: str = "e164") -> Path:
    """phone_number,name,email with `rows` distinct numbers."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["phone_number", "name", "email"])
        for index in range(rows):
            writer.writerow(
                [phone_number(index, style), f"Person {index}", f"person{index}@example.com"]
            )
    return path
