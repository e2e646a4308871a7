"""The ASGI application: `create_app(settings)` wires routers, errors and the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from outdial import __version__, services
from outdial.assistant.endpoints import router as assistant_router
from outdial.auth.dependencies import require_all_credentials
from outdial.auth.rate_limit import RateLimitHeaders, rate_limiter_for
from outdial.call.endpoints import router as call_router
from outdial.campaign.endpoints import router as campaign_router
from outdial.chat.endpoints import router as chat_router
from outdial.config import Settings
from outdial.database import create_engine, create_sessionmaker, migrate
from outdial.do_not_call.endpoints import router as do_not_call_router
from outdial.errors import document_errors, install_handlers
from outdial.limits import UploadLimit
from outdial.metrics import Observe, exposition
from outdial.phone_number.endpoints import router as phone_number_router
from outdial.pre_dial.endpoints import router as pre_dial_router
from outdial.recipient_list.endpoints import router as recipient_list_router
from outdial.secrets_store import CredentialBox, load_or_create_key
from outdial.telephony.webhooks import Callbacks
from outdial.telephony.webhooks import router as telephony_router
from outdial.voice.media import router as media_router
from outdial.webhook.endpoints import router as webhook_router

log = logging.getLogger("outdial")


def create_worker_app() -> FastAPI:
    """One process of `outdial serve --workers N`: settings from the environment; the
    parent has migrated the database and made the secret key."""
    return create_app(Settings(), run_migrations=False)


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        if run_migrations:
            await migrate(url)
        engine = create_engine(url)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.credential_box = CredentialBox(load_or_create_key(secret, settings.data_dir))
        app.state.rate_limiter = rate_limiter_for(
            url, settings.rate_limit_tiers, settings.rate_limit_default_tier
        )
        try:
            async with services.running(app, settings, simulator):
                yield
        finally:
            await app.state.rate_limiter.close()
            await engine.dispose()

    app = FastAPI(
        title="outdial",
        version=__version__,
        summary="Outbound AI voice-call campaigns",
        lifespan=lifespan,
    )
    install_handlers(app)
    app.add_middleware(Callbacks)  # (innermost: the others see callbacks as before)
    app.add_middleware(Observe)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RateLimitHeaders)
    app.include_router(telephony_router)
    app.include_router(media_router)
    simulator = services.mount_simulator(app, settings)
    for router in (
        campaign_router,
        recipient_list_router,
        phone_number_router,
        assistant_router,
        call_router,
        chat_router,
        do_not_call_router,
        webhook_router,
        pre_dial_router,
    ):
        app.include_router(router)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(exposition(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(require_all_credentials(FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
