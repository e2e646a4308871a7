"""`outdial demo`: the service, plus a campaign of simulated people dialing to completion.

The run command a newcomer starts: it serves the API as `outdial serve` does, prints the
local user's key, then creates an assistant, a caller number and a campaign against the
built-in carrier simulator and shows it live until every recipient is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.columns import Columns
from rich.console import Console
from rich.live import Live
from rich.table import Table

from outdial import websocket
from outdial.app import create_app
from outdial.campaign.state import RECIPIENT_STATUSES
from outdial.cli.serve import local_credentials
from outdial.config import Settings

DEMO_SCENARIO = {
    "human": 6,
    "machine": 2,
    "no_answer": 2,
    "busy": 1,
    "failed": 1,
    "ring_seconds": [1, 3],
    "talk_seconds": [2, 6],
}
# With the voice runtime installed, the simulated people talk with the assistant.
DEMO_SCRIPT = ["Yes, this is me.", "Can you move my appointment to Friday?", "Thanks, goodbye."]


def _demo_scenario() -> dict[str, Any]:
    if importlib.util.find_spec("pipecat") and importlib.util.find_spec("websockets"):
        return {**DEMO_SCENARIO, "caller_script": DEMO_SCRIPT}
    return DEMO_SCENARIO


def demo_command(
    recipients: Annotated[int, typer.Option(help="Simulated people to call.")] = 30,
    concurrency: Annotated[int, typer.Option(help="max_concurrency of the campaign.")] = 5,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    keep_serving: Annotated[bool, typer.Option(help="Keep the API up after the demo.")] = True,
) -> None:
    """Serve outdial and dial a demo campaign through the carrier simulator, live."""
    settings = Settings(telephony="simulated")
    settings = settings.model_copy(update={"port": port or settings.port, "simulator_url": None})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(settings, recipients, concurrency, keep_serving))


async def _demo(settings: Settings, recipients: int, concurrency: int, keep_serving: bool) -> None:
    console = Console()
    issued = await local_credentials(settings)
    base = settings.resolved_public_base_url
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            ws_per_message_deflate=False,  # as `outdial serve`: media frames barely compress
            ws=websocket.PATH,  # as `outdial serve` on this (the standard) event loop
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    print(f"outdial on {base}  (API docs: {base}/docs)")
    print(f"user id: {issued.user_id}\napi key: {issued.key}")
    headers = {"Authorization": f"Bearer {issued.key}", "X-User-ID": issued.user_id}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
        await api.put("/_simulator/_sim/scenario", json=_demo_scenario())
        campaign_id = await _create_campaign(api, recipients, concurrency)
        await _watch(console, api, campaign_id)
    if keep_serving:
        console.print(f"\nThe API keeps running on {base} (Ctrl-C to stop).")
        await serving
    else:
        server.should_exit = True
        await serving


async def _create_campaign(api: httpx.AsyncClient, count: int, concurrency: int) -> str:
    assistant = (
        await api.post(
            "/assistants",
            json={
                "name": "Demo assistant",
                "system_instruction": "Remind people of their appointment.",
            },
        )
    ).json()
    number = await api.post(
        "/phone-numbers",
        json={
            "phone_number": f"+1415{random.randrange(200, 999)}{random.randrange(10**4):04d}",
            "provider": "twilio",
            "account_sid": "AC" + "0" * 32,
            "auth_token": "simulated",
            "label": "demo number",
            "calls_per_second": 5,
        },
    )
    people = random.sample(range(10**6), count)
    body = {
        "name": "Demo campaign",
        "assistant_id": assistant["id"],
        "phone_number_id": number.json()["id"],
        "max_concurrency": concurrency,
        "opening_message_template": "Hi {{ name | default('there') }}!",
        "recipients": [
            {
                "phone_number": f"+1650{200 + n // 10**4:03d}{n % 10**4:04d}",
                "metadata": {"name": f"Person {i + 1}"},
            }
            for i, n in enumerate(people)
        ],
    }
    campaign = (await api.post("/campaign", json=body)).json()
    await api.post(f"/campaign/{campaign['id']}/start")
    return str(campaign["id"])


async def _watch(console: Console, api: httpx.AsyncClient, campaign_id: str) -> None:
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            campaign = (await api.get(f"/campaign/{campaign_id}")).json()
            calls = (
                await api.get("/calls", params={"campaign_id": campaign_id, "limit": 20})
            ).json()
            live.update(_view(campaign, calls))
            if campaign["status"] == "completed":
                return
            await asyncio.sleep(0.25)


STATUSES = (*RECIPIENT_STATUSES, "total")


def _view(campaign: dict[str, Any], calls: list[dict[str, Any]]) -> Columns:
    counts = Table("recipients", "", title=f"{campaign['name']}: {campaign['status']}")
    for key in STATUSES:
        counts.add_row(key.replace("_", " "), str(campaign["counts"][key]))
    counts.add_row("calls placed", str(campaign["counts"]["calls_placed"]))
    counts.add_row(
        "calls live", f"{campaign['counts']['calls_active']} / {campaign['max_concurrency']}"
    )
    live_calls = Table("call", "to", "status", "answered by", title="live calls")
    for call in calls:
        if call["status"] in ("queued", "initiated", "ringing", "in_progress"):
            live_calls.add_row(
                call["id"], call["to_number"], call["status"], call["answered_by"] or ""
            )
    return Columns([counts, live_calls])
