"""Health and metrics need no key; metrics count requests under their route template."""

from __future__ import annotations

import httpx
from tests.support import Tenant


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await tenant.get("/campaign/cmp_doesnotexist")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = [
        line
        for line in response.text.splitlines()
        if line.startswith("outdial_http_requests_total")
    ]
    assert any(
        'route="/campaign/{campaign_id}"' in line and 'status="4xx"' in line for line in lines
    )
    assert not any("cmp_doesnotexist" in line for line in lines)


async def test_invented_methods_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    for method in ("BREW", "PURGE", "X-ANYTHING"):
        await client.request(method, "/health")
    text = (await client.get("/metrics")).text
    assert 'method="OTHER"' in text
    assert not any(name in text for name in ("BREW", "PURGE", "X-ANYTHING"))
