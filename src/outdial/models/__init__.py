"""Every ORM model, importable from one place by the API, the worker and the CLI."""

from outdial.models.assistant import Assistant
from outdial.models.base import Base, utcnow
from outdial.models.call import Call
from outdial.models.call_event import CallEvent
from outdial.models.campaign import Campaign, CampaignCount, CampaignRecipient
from outdial.models.chat import ChatMessage, ChatSession
from outdial.models.do_not_call import DoNotCallEntry
from outdial.models.idempotency_key import IdempotencyKey
from outdial.models.phone_number import PhoneNumber
from outdial.models.pre_dial_check import PreDialCheck
from outdial.models.rate_limit import RateLimitCount
from outdial.models.recipient_list import RecipientList, RecipientListRow
from outdial.models.user import ApiKey, User
from outdial.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "ApiKey",
    "Assistant",
    "Base",
    "Call",
    "CallEvent",
    "Campaign",
    "CampaignCount",
    "CampaignRecipient",
    "ChatMessage",
    "ChatSession",
    "DoNotCallEntry",
    "IdempotencyKey",
    "PhoneNumber",
    "PreDialCheck",
    "RateLimitCount",
    "RecipientList",
    "RecipientListRow",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "utcnow",
]
