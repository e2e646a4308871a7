"""Concurrent writers: no lost update, no duplicate position, no 'database is locked'."""

from __future__ import annotations

import asyncio

from tests.support import Tenant, numbers


async def test_concurrent_appends_keep_positions_dense_and_counts_exact(tenant: Tenant) -> None:
    campaign = await tenant.campaign()
    batches = [numbers(25, start=100 * i) for i in range(12)]

    async def append(batch: list[str]) -> int:
        response = await tenant.post(
            f"/campaign/{campaign['id']}/recipients",
            json={"recipients": [{"phone_number": n} for n in batch]},
        )
        return response.status_code

    assert await asyncio.gather(*(append(b) for b in batches)) == [200] * len(batches)
    current = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert current["counts"]["total"] == 300
    assert current["counts"]["pending"] == 300
    positions = []
    for offset in range(0, 300, 100):
        page = await tenant.ok(
            "GET", f"/campaign/{campaign['id']}/recipients", params={"limit": 100, "offset": offset}
        )
        positions += [r["position"] for r in page]
    assert positions == list(range(1, 301))


async def test_concurrent_edits_of_one_campaign_all_succeed(tenant: Tenant) -> None:
    campaign = await tenant.campaign()

    async def rename(i: int) -> int:
        response = await tenant.request(
            "PATCH",
            f"/campaign/{campaign['id']}",
            json={"name": f"name {i}", "max_concurrency": i + 1},
        )
        return response.status_code

    assert await asyncio.gather(*(rename(i) for i in range(15))) == [200] * 15
    final = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert final["max_concurrency"] == int(final["name"].split()[1]) + 1
