"""Campaign recipients: normalising inline input, adding it, and checking templates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import repository
from outdial.campaign.schemas import RecipientInput
from outdial.errors import Invalid
from outdial.models import Campaign, utcnow
from outdial.phones import InvalidPhoneNumber, normalize_e164
from outdial.templates import TemplateProblem, compile_template, render, variables_for

MAX_REPORTED = 100
TEMPLATE_FIELDS = (
    "opening_message_template",
    "returning_message_template",
    "voicemail_message_template",
)


@dataclass
class Prepared:
    phone_number: str
    metadata: dict[str, Any]
    assistant_overrides: dict[str, Any] = field(default_factory=dict)


def prepare(inputs: Sequence[RecipientInput], region: str, loc: list[str | int]) -> list[Prepared]:
    """E.164 for every inline recipient; one 422 listing every number that is not valid."""
    prepared: list[Prepared] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(inputs):
        try:
            number = normalize_e164(item.phone_number, region)
        except InvalidPhoneNumber as exc:
            if len(problems) < MAX_REPORTED:
                problems.append(
                    {"loc": [*loc, index, "phone_number"], "msg": str(exc), "type": "value_error"}
                )
            continue
        prepared.append(Prepared(number, dict(item.metadata), dict(item.assistant_overrides)))
    if problems:
        raise Invalid.many(problems)
    return prepared


async def add(
    session: AsyncSession, campaign: Campaign, items: Sequence[Prepared]
) -> dict[str, int]:
    """Append recipients after the last position; a number already present is `skipped`.

    The caller holds the campaign row, so positions stay dense and unique.
    """
    seen = await repository.numbers_present(session, campaign.id, {p.phone_number for p in items})
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for item in items:
        duplicate = item.phone_number in seen
        seen.add(item.phone_number)
        campaign.last_position += 1
        rows.append(
            {
                "campaign_id": campaign.id,
                "position": campaign.last_position,
                "phone_number": item.phone_number,
                "recipient_metadata": item.metadata,
                "assistant_overrides": item.assistant_overrides,
                "status": "skipped" if duplicate else "pending",
                "status_reason": "duplicate" if duplicate else None,
                "attempts": 0,
                "updated_at": now,
            }
        )
    await repository.insert_recipients(session, rows)
    skipped = sum(1 for row in rows if row["status"] == "skipped")
    return {"total": len(rows), "pending": len(rows) - skipped, "skipped": skipped}


def compiled_templates(sources: dict[str, str | None]) -> dict[str, Any]:
    """Compile each template given; one 422 naming every field with a syntax error."""
    compiled: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for name, source in sources.items():
        if not source:
            continue
        try:
            compiled[name] = compile_template(source)
        except TemplateProblem as exc:
            problems.append({"loc": ["body", name], "msg": str(exc), "type": "template_error"})
    if problems:
        raise Invalid.many(problems)
    return compiled


def template_failures(
    compiled: dict[str, Any], recipients: Iterable[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Render every template for every (label, number, metadata); the failures, capped."""
    failures: list[dict[str, Any]] = []
    for label, number, metadata in recipients:
        variables = variables_for(number, metadata)
        for name, template in compiled.items():
            try:
                render(template, variables)
            except TemplateProblem as exc:
                failures.append(
                    {
                        "recipient": label,
                        "phone_number": number,
                        "template": name,
                        "error": str(exc),
                    }
                )
                if len(failures) >= MAX_REPORTED:
                    return failures
    return failures


def raise_template_failures(failures: list[dict[str, Any]], loc: list[str | int]) -> None:
    if failures:
        raise Invalid.many(
            [
                {
                    "loc": [*loc, f["template"]],
                    "type": "template_error",
                    "msg": f"{f['template']} cannot be rendered for recipient {f['recipient']} "
                    f"({f['phone_number']}): {f['error']}",
                    "recipient": f["recipient"],
                    "phone_number": f["phone_number"],
                }
                for f in failures
            ]
        )


def templates_of(campaign: Campaign) -> dict[str, Any]:
    return compiled_templates({name: getattr(campaign, name) for name in TEMPLATE_FIELDS})
