"""`outdial lists import`: the API's CSV import, run locally with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, cast

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from outdial.cli.runtime import transaction
from outdial.config import Settings
from outdial.errors import OutdialError
from outdial.models import RecipientList, User
from outdial.recipient_list import service
from outdial.repository import get_owned


class _Counting:
    """A binary file that reports how many bytes have been read from it."""

    def __init__(self, raw: IO[bytes], advance: Any) -> None:
        self._raw = raw
        self._advance = advance

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._advance(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        data = self._raw.read1(size)  # type: ignore[attr-defined]
        self._advance(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self._advance(count or 0)
        return count or 0


async def import_file(
    console: Console,
    path: Path,
    user_id: str,
    *,
    name: str | None,
    into: str | None,
    append: bool,
    use_template: bool,
) -> int:
    """Import `path` like the API would; print the report. Returns the exit code."""
    settings = Settings()
    columns = (
        *Progress.get_default_columns()[:1],
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress, path.open("rb") as raw:
        task = progress.add_task(f"importing {path.name}", total=path.stat().st_size)
        counting = cast(IO[bytes], _Counting(raw, lambda n: progress.advance(task, n)))
        try:
            async with transaction(settings) as session:
                if await session.get(User, user_id) is None:
                    console.print(f"[red]no user {escape(user_id)}[/red]")
                    return 2
                if into and await get_owned(session, RecipientList, user_id, into) is None:
                    console.print(
                        f"[red]no recipient list {escape(into)} for {escape(user_id)}[/red]"
                    )
                    return 2
                if into:
                    recipient_list, report = await service.upload(
                        session,
                        user_id,
                        into,
                        counting,
                        replace=not append,
                        use_template=use_template,
                        region=settings.default_region,
                    )
                else:
                    recipient_list, created = await service.create(
                        session,
                        user_id,
                        name or path.stem,
                        counting,
                        use_template=use_template,
                        region=settings.default_region,
                    )
                    assert created is not None  # a file was given
                    report = created
        except OutdialError as exc:
            console.print(f"[red]import refused:[/red] {escape(_explain(exc.detail))}")
            return 1
    console.print(
        f"list {recipient_list.id}: {report.imported} imported, "
        f"{report.rejected} rejected, {recipient_list.row_count} rows in all"
    )
    for problem in report.errors[:20]:
        where = f"row {problem.row} {problem.column or ''}"
        console.print(escape(f"  {where}: {problem.reason}"))
    return 0


def _explain(detail: Any) -> str:
    """An error's detail as text: validation errors one message per line."""
    if isinstance(detail, list):
        return "\n".join(str(item.get("msg", item)) for item in detail)
    return str(detail)
