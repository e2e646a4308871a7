"""`outdial` command line: serve, users, keys, lists. Commands parse options and call services."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from outdial.auth import service as auth_service
from outdial.cli.demo import demo_command
from outdial.cli.lists import import_file
from outdial.cli.processes import simulator_command, worker_command
from outdial.cli.runtime import transaction
from outdial.cli.serve import serve_command
from outdial.config import Settings
from outdial.database import migrate
from outdial.errors import OutdialError

app = typer.Typer(help="outdial: outbound AI voice-call campaigns.", no_args_is_help=True)
users = typer.Typer(help="Users (tenants).", no_args_is_help=True)
keys = typer.Typer(help="API keys: shown once at creation, stored hashed.", no_args_is_help=True)
lists = typer.Typer(help="Recipient lists.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(keys, name="keys")
app.add_typer(lists, name="lists")
app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.command("worker")(worker_command)
app.command("simulator")(simulator_command)
console = Console()


def run(coroutine: Any) -> Any:
    """Run a command's coroutine; a refusal (unknown user or key…) is one line and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except OutdialError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None


@app.command("migrate")
def migrate_command() -> None:
    """Bring the configured database to the newest schema (serve does this at start)."""
    settings = Settings()
    run(migrate(settings.resolved_database_url))
    console.print(f"migrated {settings.resolved_database_url}")


@users.command("create")
def users_create(name: Annotated[str, typer.Argument(help="A name for the user.")]) -> None:
    """Create a user and print its id."""

    async def go() -> str:
        async with transaction(Settings()) as session:
            return (await auth_service.create_user(session, name)).id

    print(run(go()))


@users.command("list")
def users_list() -> None:
    """List users."""

    async def go() -> list[tuple[str, str, str]]:
        async with transaction(Settings()) as session:
            return [
                (u.id, u.name, u.created_at.isoformat())
                for u in await auth_service.list_users(session)
            ]

    table = Table("id", "name", "created")
    for row in run(go()):
        table.add_row(*row)
    console.print(table)


@keys.command("create")
def keys_create(
    user_id: Annotated[str, typer.Argument(help="The user the key belongs to.")],
    label: Annotated[str | None, typer.Option(help="A note to recognise the key by.")] = None,
    tier: Annotated[
        str | None,
        typer.Option(
            help="Rate-limit tier, one of OUTDIAL_RATE_LIMIT_TIERS "
            "(default: OUTDIAL_RATE_LIMIT_DEFAULT_TIER, also when that setting changes)."
        ),
    ] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    settings = Settings()
    if tier is not None and tier not in settings.rate_limit_tiers:
        known = ", ".join(sorted(settings.rate_limit_tiers))
        raise typer.BadParameter(f"unknown tier {tier!r}; the tiers are: {known}")

    async def go() -> auth_service.IssuedKey:
        async with transaction(settings) as session:
            return await auth_service.create_key(session, user_id, label, tier)

    issued = run(go())
    print(f"key id:  {issued.id}\napi key: {issued.key}\nuser id: {issued.user_id}")


@keys.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (key_…).")]) -> None:
    """Revoke an API key at once."""

    async def go() -> None:
        async with transaction(Settings()) as session:
            await auth_service.revoke_key(session, key_id)

    run(go())
    console.print(f"revoked {key_id}")


@keys.command("list")
def keys_list(user_id: Annotated[str, typer.Argument()]) -> None:
    """List a user's keys (ids and prefixes only)."""

    async def go() -> list[tuple[str, str, str, str, str]]:
        async with transaction(Settings()) as session:
            return [
                (
                    k.id,
                    k.prefix + "…",
                    k.label or "",
                    k.tier or "(default)",
                    "revoked" if k.revoked_at else "live",
                )
                for k in await auth_service.list_keys(session, user_id)
            ]

    table = Table("id", "prefix", "label", "tier", "state")
    for row in run(go()):
        table.add_row(*row)
    console.print(table)


@lists.command("import")
def lists_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    user: Annotated[str, typer.Option("--user", help="The user the list belongs to.")],
    name: Annotated[str | None, typer.Option(help="Name of a new list.")] = None,
    into: Annotated[str | None, typer.Option("--list", help="Import into this list.")] = None,
    append: Annotated[bool, typer.Option(help="Append instead of replacing.")] = False,
    use_template: Annotated[
        bool, typer.Option("--template", help="Check the template columns.")
    ] = False,
) -> None:
    """Import a CSV into a new or existing recipient list, with a progress bar."""
    code = run(
        import_file(
            console, file, user, name=name, into=into, append=append, use_template=use_template
        )
    )
    raise typer.Exit(code)
