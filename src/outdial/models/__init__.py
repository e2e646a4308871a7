"""Every ORM model, importable from one place by the API, the worker and the CLI."""

from outdial.models.assistant import Assistant
from outdial.models.base import Base, utcnow
from outdial.models.call import Call
from outdial.models.call_event import CallEvent
from outdial.models.campaign import Campaign, CampaignCount, CampaignRecipient
from outdial.models.idempotency_key import IdempotencyKey
from outdial.models.phone_number import PhoneNumber
from outdial.models.recipient_list import RecipientList, RecipientListRow
from outdial.models.user import ApiKey, User

__all__ = [
    "ApiKey",
    "Assistant",
    "Base",
    "Call",
    "CallEvent",
    "Campaign",
    "CampaignCount",
    "CampaignRecipient",
    "IdempotencyKey",
    "PhoneNumber",
    "RecipientList",
    "RecipientListRow",
    "User",
    "utcnow",
]
