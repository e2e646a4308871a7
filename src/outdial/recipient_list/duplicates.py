"""Which rows of an import repeat a number: an earlier row of the file, or a row of the list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from outdial.recipient_list import repository
from outdial.recipient_list.csv_import import RowError

# (position, CSV row, phone number, metadata as JSON): a row ready to be written.
NewRow = tuple[int, int, str, str]


@dataclass
class Batch:
    """Parsed rows: good ones as (row, phone number, metadata as JSON), and row errors."""

    good: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.good or self.errors)


class SeenNumbers:
    """The numbers an import has written, in a fixed 4 MiB Bloom filter.

    Probing the list for every number costs the database almost as much as writing the row;
    "not seen" here is certain, so only the few numbers it may have seen are probed.
    """

    BITS = 1 << 25

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def add(self, number: str) -> None:
        digest = hash(number)  # two slots from one 64-bit hash
        for slot in (digest % self.BITS, (digest >> 32) % self.BITS):
            self._bits[slot >> 3] |= 1 << (slot & 7)

    def may_contain(self, number: str) -> bool:
        digest = hash(number)
        first, second = digest % self.BITS, (digest >> 32) % self.BITS
        bits = self._bits
        return bool(bits[first >> 3] >> (first & 7) & 1 and bits[second >> 3] >> (second & 7) & 1)


class Duplicates:
    """Splits each batch into new rows, with their positions, and rows that repeat a number.

    A number repeats when an earlier row of the batch has it, or the list already does: at a
    position up to `base` it was there before this import, after it an earlier batch wrote
    it. The list is only asked about numbers `SeenNumbers` may have seen, unless it had rows
    before the import; then about every number.
    """

    def __init__(self, writer: repository.RowWriter, base: int, phone_column: str) -> None:
        self.writer = writer
        self.base = base
        self.phone_column = phone_column
        self.seen = None if base else SeenNumbers()

    async def split(
        self,
        batch: Batch,
        last_position: int,
        name_first_rows: bool,
        database_free: Callable[[], Awaitable[None]],
    ) -> tuple[list[NewRow], list[RowError]]:
        """`database_free` is awaited before the list is asked anything (a write may be on)."""
        known = await self._positions(batch, database_free)
        first_row: dict[str, int] = {}
        new: list[NewRow] = []
        errors = list(batch.errors)
        earlier: list[tuple[int, str, int]] = []
        for row, number, metadata in batch.good:
            if number in first_row:
                errors.append(self._error(row, number, f"duplicate of row {first_row[number]}"))
            elif number in known and known[number] <= self.base:
                errors.append(self._error(row, number, "duplicate: already in the list"))
            elif number in known:
                earlier.append((row, number, known[number]))
            else:
                first_row[number] = row
                new.append((last_position + len(new) + 1, row, number, metadata))
                if self.seen is not None:
                    self.seen.add(number)
        # Naming the first row costs a query: only worth it while the report has room.
        rows = await self.writer.lines_at([p for _, _, p in earlier]) if name_first_rows else {}
        for row, number, position in earlier:
            reason = f"duplicate of row {rows[position]}" if position in rows else "duplicate"
            errors.append(self._error(row, number, reason))
        return new, errors

    async def _positions(
        self, batch: Batch, database_free: Callable[[], Awaitable[None]]
    ) -> dict[str, int]:
        numbers = [number for _, number, _ in batch.good]
        if self.seen is not None:
            numbers = [number for number in numbers if self.seen.may_contain(number)]
        if not numbers:
            return {}
        await database_free()
        return await self.writer.positions_of(numbers)

    def _error(self, row: int, number: str, reason: str) -> RowError:
        return RowError(row, self.phone_column, reason, number)
