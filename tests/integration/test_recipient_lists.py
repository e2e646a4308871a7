"""Recipient lists over HTTP: CSV create and upload, row reports, paging, delete, atomicity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import Tenant, numbers

from outdial.config import Settings
from outdial.recipient_list import importer
from outdial.recipient_list.duplicates import SeenNumbers

HEADER = "phone_number,name\n"


def csv_of(count: int, start: int = 0, header: str = HEADER) -> str:
    return header + "".join(f"{n},p{start + i}\n" for i, n in enumerate(numbers(count, start)))


async def create(
    tenant: Tenant, content: bytes | str, name: str = "list", **form: Any
) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    files = {"file": ("people.csv", data, "text/csv")}
    return await tenant.post("/recipient-lists", data={"name": name, **form}, files=files)


async def upload(tenant: Tenant, list_id: str, content: bytes | str, **form: Any) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    files = {"file": ("more.csv", data, "text/csv")}
    form = {key: str(value).lower() for key, value in form.items()}
    return await tenant.post(
        f"/recipient-lists/{list_id}/recipients/upload-csv", data=form, files=files
    )


async def imported(tenant: Tenant, content: bytes | str, **form: Any) -> dict[str, Any]:
    response = await create(tenant, content, **form)
    assert response.status_code == 200, response.text
    return response.json()


async def rows_of(tenant: Tenant, list_id: str, **params: Any) -> list[dict[str, Any]]:
    return await tenant.ok("GET", f"/recipient-lists/{list_id}/recipients", params=params)


def problems(listing: dict[str, Any]) -> list[tuple[int, str | None]]:
    return [(e["row"], e["column"]) for e in listing["last_import"]["errors"]]


def refused(response: httpx.Response, status: int = 422) -> str:
    """The response's detail as one string, after checking the status."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(d["msg"] for d in detail)


# --- create, upload, read, delete -------------------------------------------------------


async def test_create_from_csv_reports_and_stores_rows(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(3), name="spring")
    assert listing["id"].startswith("rl_")
    assert listing["name"] == "spring"
    assert listing["row_count"] == 3
    assert listing["last_import"] == {
        "imported": 3,
        "rejected": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert listing["created_at"].endswith("Z")
    rows = await rows_of(tenant, listing["id"])
    assert [r["phone_number"] for r in rows] == numbers(3)
    assert [r["position"] for r in rows] == [1, 2, 3]
    assert rows[0]["metadata"] == {"name": "p0"}
    assert rows[0]["id"].startswith("rlr_")
    fetched = await tenant.ok("GET", f"/recipient-lists/{listing['id']}")
    assert fetched["row_count"] == 3
    assert fetched["last_import"] is None


async def test_create_without_a_file_makes_an_empty_list(tenant: Tenant) -> None:
    listing = await tenant.ok("POST", "/recipient-lists", data={"name": "later"})
    assert listing["row_count"] == 0
    assert listing["last_import"] is None
    response = await tenant.get(f"/recipient-lists/{listing['id']}/recipients")
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"
    filled = await upload(tenant, listing["id"], csv_of(2))
    assert filled.json()["row_count"] == 2


async def test_upload_replaces_by_default(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(3))
    replaced = await upload(tenant, listing["id"], csv_of(2, start=10))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["row_count"] == 2
    assert replaced.json()["last_import"]["imported"] == 2
    rows = await rows_of(tenant, listing["id"])
    assert [r["phone_number"] for r in rows] == numbers(2, start=10)
    assert [r["position"] for r in rows] == [1, 2]


async def test_upload_with_replace_false_appends_after_the_last_position(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(3))
    appended = await upload(tenant, listing["id"], csv_of(2, start=3), replace=False)
    assert appended.status_code == 200, appended.text
    assert appended.json()["row_count"] == 5
    rows = await rows_of(tenant, listing["id"])
    assert [r["phone_number"] for r in rows] == numbers(5)
    assert [r["position"] for r in rows] == [1, 2, 3, 4, 5]


async def test_append_rejects_numbers_already_in_the_list(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(3))
    again = "phone_number\n" + "\n".join(numbers(5)) + "\n"  # rows 2..4 are already there
    appended = await upload(tenant, listing["id"], again, replace=False)
    assert appended.status_code == 200, appended.text
    body = appended.json()
    assert body["row_count"] == 5
    assert body["last_import"]["imported"] == 2
    assert body["last_import"]["rejected"] == 3
    errors = body["last_import"]["errors"]
    assert [e["row"] for e in errors] == [2, 3, 4]
    assert all("already in the list" in e["reason"] for e in errors)
    assert [r["position"] for r in await rows_of(tenant, listing["id"])] == [1, 2, 3, 4, 5]


async def test_append_of_only_known_numbers_is_refused_and_changes_nothing(
    tenant: Tenant,
) -> None:
    listing = await imported(tenant, csv_of(2))
    response = await upload(tenant, listing["id"], csv_of(2), replace=False)
    assert "already in the list" in refused(response)
    assert (await tenant.ok("GET", f"/recipient-lists/{listing['id']}"))["row_count"] == 2


async def test_rows_page_with_limit_offset_and_total(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(7))
    response = await tenant.get(
        f"/recipient-lists/{listing['id']}/recipients", params={"limit": 3, "offset": 3}
    )
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "7"
    assert [r["position"] for r in response.json()] == [4, 5, 6]
    assert [r["phone_number"] for r in response.json()] == numbers(7)[3:6]
    tail = await rows_of(tenant, listing["id"], limit=3, offset=6)
    assert [r["position"] for r in tail] == [7]
    assert await rows_of(tenant, listing["id"], offset=50) == []
    too_many = await tenant.get(f"/recipient-lists/{listing['id']}/recipients?limit=501")
    assert too_many.status_code == 422


async def test_positions_stay_dense_when_rows_are_rejected(tenant: Tenant) -> None:
    good = numbers(3)
    text = f"phone_number\n{good[0]}\nnonsense\n{good[1]}\n{good[0]}\n{good[2]}\n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 3
    rows = await rows_of(tenant, listing["id"])
    assert [(r["position"], r["phone_number"]) for r in rows] == list(enumerate(good, start=1))


async def test_lists_page_with_total(tenant: Tenant) -> None:
    for index in range(3):
        await imported(tenant, csv_of(1, start=index), name=f"l{index}")
    response = await tenant.get("/recipient-lists", params={"limit": 2})
    assert response.headers["X-Total-Count"] == "3"
    assert [item["name"] for item in response.json()] == ["l2", "l1"]


async def test_delete_removes_the_list_and_its_rows(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(2))
    response = await tenant.request("DELETE", f"/recipient-lists/{listing['id']}")
    assert response.status_code == 204
    assert (await tenant.get(f"/recipient-lists/{listing['id']}")).status_code == 404
    gone = await tenant.get(f"/recipient-lists/{listing['id']}/recipients")
    assert gone.status_code == 404


async def test_delete_is_refused_while_a_draft_campaign_uses_the_list(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(2))
    await tenant.campaign(recipient_list_id=listing["id"])
    response = await tenant.request("DELETE", f"/recipient-lists/{listing['id']}")
    assert "draft campaign" in refused(response, 409)
    assert (await tenant.get(f"/recipient-lists/{listing['id']}")).status_code == 200


async def test_another_tenants_list_is_not_found(tenant: Tenant, other_tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(2))
    path = f"/recipient-lists/{listing['id']}"
    assert (await other_tenant.get(path)).status_code == 404
    assert (await other_tenant.get(f"{path}/recipients")).status_code == 404
    assert (await upload(other_tenant, listing["id"], csv_of(1, start=5))).status_code == 404
    assert (await other_tenant.request("DELETE", path)).status_code == 404
    assert (await tenant.get(path)).json()["row_count"] == 2


# --- the template ------------------------------------------------------------------------


async def test_template_is_the_csv_header(tenant: Tenant) -> None:
    response = await tenant.get("/recipient-lists/template")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.strip().split(",")[0] == "phone_number"
    listing = await imported(
        tenant, response.text + f"{numbers(1)[0]},Ann,,,,,\n", use_template="true"
    )
    assert listing["row_count"] == 1


async def test_use_template_refuses_an_unknown_column_by_name(tenant: Tenant) -> None:
    text = f"phone_number,name,favourite_colour\n{numbers(1)[0]},Ann,teal\n"
    response = await create(tenant, text, use_template="true")
    message = refused(response)
    assert "favourite_colour" in message
    assert "phone_number" in message  # the template is shown
    assert (await create(tenant, text)).status_code == 200  # without the flag it is metadata


async def test_use_template_on_upload_is_checked_too(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(1))
    response = await upload(
        tenant, listing["id"], f"phone,name\n{numbers(1, 5)[0]},Bo\n", use_template=True
    )
    assert "phone" in refused(response)


# --- rows reported one by one while good rows import ------------------------------------


async def test_invalid_number_is_reported_with_row_column_and_reason(tenant: Tenant) -> None:
    good = numbers(2)
    text = f"phone_number,name\n{good[0]},Ann\n+1 555 000,Bo\n{good[1]},Cy\n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 2
    report = listing["last_import"]
    assert (report["imported"], report["rejected"]) == (2, 1)
    [error] = report["errors"]
    assert (error["row"], error["column"]) == (3, "phone_number")
    assert "invalid number" in error["reason"]
    assert error["value"] == "+1 555 000"


async def test_duplicate_in_the_file_names_the_first_row(tenant: Tenant) -> None:
    a, b = numbers(2)
    national = f"({a[2:5]}) {a[5:8]}-{a[8:]}"  # the same number written another way
    text = f"phone_number\n{a}\n{b}\n{national}\n{b}\n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 2
    reasons = {e["row"]: e["reason"] for e in listing["last_import"]["errors"]}
    assert reasons == {4: "duplicate of row 2", 5: "duplicate of row 3"}


async def test_missing_phone_value_is_reported(tenant: Tenant) -> None:
    text = f"name,phone_number\nAnn,{numbers(1)[0]}\nBo,\nCy,   \n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 1
    assert problems(listing) == [(3, "phone_number"), (4, "phone_number")]
    assert all("missing" in e["reason"] for e in listing["last_import"]["errors"])


async def test_row_with_bad_encoding_is_rejected_alone(tenant: Tenant) -> None:
    a, b, c = numbers(3)
    data = (
        b"phone_number,name\n"
        + f"{a},Ann\n".encode()
        + f"{b},Jos\xe9\n".encode("latin-1")  # Latin-1, not UTF-8
        + f"{c},Zo\u00eb\n".encode()
    )
    listing = await imported(tenant, data)
    assert listing["row_count"] == 2
    [error] = listing["last_import"]["errors"]
    assert (error["row"], error["column"]) == (3, "name")
    assert "encoding" in error["reason"]
    rows = await rows_of(tenant, listing["id"])
    assert [r["metadata"]["name"] for r in rows] == ["Ann", "Zo\u00eb"]


async def test_header_with_bad_encoding_is_refused(tenant: Tenant) -> None:
    response = await create(tenant, b"phone_number,n\xffme\n+14155550100,Ann\n")
    assert "UTF-8" in refused(response)


async def test_utf8_bom_and_crlf_are_understood(tenant: Tenant) -> None:
    a, b = numbers(2)
    data = "\ufeffPhone_Number,Name\r\n" + f"{a},Ann\r\n{b},Bo\r\n"
    listing = await imported(tenant, data.encode())
    assert listing["row_count"] == 2
    assert listing["last_import"]["rejected"] == 0
    rows = await rows_of(tenant, listing["id"])
    assert rows[0]["metadata"] == {"name": "Ann"}


async def test_quoted_fields_keep_commas_and_newlines(tenant: Tenant) -> None:
    a, b = numbers(2)
    text = (
        "phone_number,name,notes\n"
        f'{a},"Smith, Ann","line one\nline two"\n'
        f'"{b}","Bo ""the boss""",plain\n'
        "not-a-number,x,y\n"
    )
    listing = await imported(tenant, text)
    assert listing["row_count"] == 2
    rows = await rows_of(tenant, listing["id"])
    assert rows[0]["metadata"] == {"name": "Smith, Ann", "notes": "line one\nline two"}
    assert rows[1]["metadata"] == {"name": 'Bo "the boss"', "notes": "plain"}
    # Row numbers are spreadsheet rows: the two-line cell is still one row.
    assert problems(listing) == [(4, "phone_number")]


async def test_row_with_more_cells_than_the_header_is_rejected(tenant: Tenant) -> None:
    a, b, c = numbers(3)
    text = f"phone_number,name\n{a},Ann\n{b},Bo,extra\n{c}\n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 2  # a short row is fine: missing cells are empty
    [error] = listing["last_import"]["errors"]
    assert error["row"] == 3
    assert "3 cells" in error["reason"]
    rows = await rows_of(tenant, listing["id"])
    assert rows[1]["metadata"] == {}


async def test_blank_lines_are_ignored_but_counted_as_rows(tenant: Tenant) -> None:
    a, b = numbers(2)
    text = f"phone_number\n\n{a}\n ,\n\nnope\n{b}\n\n"
    listing = await imported(tenant, text)
    assert listing["row_count"] == 2
    assert listing["last_import"]["rejected"] == 1
    assert problems(listing) == [(6, "phone_number")]


@pytest.mark.parametrize(
    "column", ["phone", "Number", "mobile", "Phone Number", "to", "telephone", "cell"]
)
async def test_phone_column_aliases(tenant: Tenant, column: str) -> None:
    listing = await imported(tenant, f"name,{column}\nAnn,{numbers(1)[0]}\n")
    assert listing["row_count"] == 1
    [row] = await rows_of(tenant, listing["id"])
    assert row["phone_number"] == numbers(1)[0]
    assert row["metadata"] == {"name": "Ann"}


async def test_header_names_become_template_friendly_keys(tenant: Tenant) -> None:
    listing = await imported(tenant, f"Phone, First Name ,last-name\n{numbers(1)[0]},Ann,Lee\n")
    [row] = await rows_of(tenant, listing["id"])
    assert row["metadata"] == {"first_name": "Ann", "last_name": "Lee"}


async def test_numbers_without_plus_use_the_default_region(tenant: Tenant) -> None:
    text = "phone_number\n(415) 555-0100\n415.555.0101\n+44 20 7946 0958\n"
    listing = await imported(tenant, text)
    rows = await rows_of(tenant, listing["id"])
    assert [r["phone_number"] for r in rows] == ["+14155550100", "+14155550101", "+442079460958"]


# --- whole-file refusals -----------------------------------------------------------------


async def test_header_only_file_is_refused(tenant: Tenant) -> None:
    assert "no recipient rows" in refused(await create(tenant, "phone_number,name\n"))
    assert "no recipient rows" in refused(await create(tenant, "phone_number,name\n\n\n"))


async def test_empty_file_is_refused(tenant: Tenant) -> None:
    assert "empty" in refused(await create(tenant, b""))


async def test_missing_phone_column_is_refused_naming_the_header(tenant: Tenant) -> None:
    message = refused(await create(tenant, "name,email\nAnn,ann@example.com\n"))
    assert "phone column" in message
    assert "name, email" in message


async def test_duplicate_header_columns_are_refused(tenant: Tenant) -> None:
    message = refused(await create(tenant, f"phone,name,Name\n{numbers(1)[0]},a,b\n"))
    assert "duplicate columns name" in message


async def test_oversized_file_is_refused_with_413(tenant: Tenant, settings: Settings) -> None:
    line = f"{numbers(1)[0]},{'x' * 100}\n"
    data = (HEADER + line * (settings.max_upload_bytes // len(line) + 1)).encode()
    assert len(data) > settings.max_upload_bytes
    assert "limit" in refused(await create(tenant, data), 413)
    listing = await imported(tenant, csv_of(1))
    assert refused(await upload(tenant, listing["id"], data), 413)
    assert (await tenant.ok("GET", f"/recipient-lists/{listing['id']}"))["row_count"] == 1


async def test_file_where_every_row_is_bad_is_refused_and_nothing_is_written(
    tenant: Tenant,
) -> None:
    before = await tenant.get("/recipient-lists")
    text = "phone_number,name\nnope,Ann\n,Bo\n+1 555,Cy\n"
    response = await create(tenant, text, name="doomed")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(d["row"], d["column"]) for d in detail] == [
        (2, "phone_number"),
        (3, "phone_number"),
        (4, "phone_number"),
    ]
    assert detail[0]["loc"] == ["body", "file", 2]
    after = await tenant.get("/recipient-lists")
    assert after.headers["X-Total-Count"] == before.headers["X-Total-Count"]


async def test_failed_replace_leaves_the_list_exactly_as_it_was(tenant: Tenant) -> None:
    listing = await imported(tenant, csv_of(4))
    before = await rows_of(tenant, listing["id"])
    for bad in ("phone_number\nnope\nworse\n", "name\nAnn\n", "phone_number\n", b""):
        assert (await upload(tenant, listing["id"], bad)).status_code == 422
    duplicates_only = f"phone_number\n{numbers(1)[0]}\n{numbers(1)[0]}\n"
    after_dupes = await upload(tenant, listing["id"], duplicates_only)  # one good row: replaces
    assert after_dupes.json()["row_count"] == 1
    restored = await upload(tenant, listing["id"], csv_of(4))
    assert restored.json()["row_count"] == 4
    assert [(r["position"], r["phone_number"]) for r in await rows_of(tenant, listing["id"])] == [
        (r["position"], r["phone_number"]) for r in before
    ]
    for bad in ("phone_number\nnope\n", "phone_number\n" + "\n".join(numbers(4)) + "\n"):
        assert (await upload(tenant, listing["id"], bad, replace=False)).status_code == 422
    fetched = await tenant.ok("GET", f"/recipient-lists/{listing['id']}")
    assert fetched["row_count"] == 4
    assert len(await rows_of(tenant, listing["id"])) == 4


async def test_reported_errors_are_capped_but_counted(tenant: Tenant) -> None:
    text = HEADER + "".join(f"bad{i},x\n" for i in range(150)) + f"{numbers(1)[0]},ok\n"
    listing = await imported(tenant, text)
    report = listing["last_import"]
    assert report["imported"] == 1
    assert report["rejected"] == 150
    assert len(report["errors"]) == 100
    assert report["errors_truncated"] is True
    assert [e["row"] for e in report["errors"]] == list(range(2, 102))


async def test_capped_report_keeps_the_earliest_rows_of_both_kinds(tenant: Tenant) -> None:
    good = numbers(60)
    dupes = "".join(f"{n}\n" for n in good)  # rows 62..121 repeat rows 2..61
    bad = "".join(f"bad{i}\n" for i in range(60))  # rows 122..181
    listing = await imported(
        tenant, "phone_number\n" + "".join(f"{n}\n" for n in good) + dupes + bad
    )
    report = listing["last_import"]
    assert (report["imported"], report["rejected"]) == (60, 120)
    assert report["errors_truncated"] is True
    assert [e["row"] for e in report["errors"]] == list(range(62, 162))


async def test_duplicates_are_found_when_the_filter_says_maybe_to_everything(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SeenNumbers, "BITS", 8)  # every number "may" have been seen
    monkeypatch.setattr(importer, "BATCH", 2)  # duplicates across batches, too
    a, b, c = numbers(3)
    listing = await imported(tenant, f"phone_number\n{a}\n{b}\n{a}\n{c}\n{b}\n\n{c}\n")
    assert listing["row_count"] == 3
    reasons = {e["row"]: e["reason"] for e in listing["last_import"]["errors"]}
    assert reasons == {4: "duplicate of row 2", 6: "duplicate of row 3", 8: "duplicate of row 5"}
    rows = await rows_of(tenant, listing["id"])
    assert [(r["position"], r["phone_number"]) for r in rows] == [(1, a), (2, b), (3, c)]


async def test_duplicates_across_batches_of_an_append_name_their_first_row(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH", 2)
    listing = await imported(tenant, csv_of(3))
    d, e = numbers(2, start=10)
    text = f"phone_number\n{d}\n{numbers(1)[0]}\n{e}\n{d}\n"
    appended = await upload(tenant, listing["id"], text, replace=False)
    body = appended.json()
    assert body["row_count"] == 5
    reasons = {x["row"]: x["reason"] for x in body["last_import"]["errors"]}
    assert reasons == {3: "duplicate: already in the list", 5: "duplicate of row 2"}


async def test_an_announced_oversized_upload_is_refused_before_it_is_read(
    tenant: Tenant, settings: Settings
) -> None:
    sent = 0
    boundary = "b0undary"
    size = settings.max_upload_bytes * 4

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        chunk = b"x" * 65536
        while sent < size:
            sent += len(chunk)
            yield chunk

    headers = {
        **tenant.headers,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(size),
    }
    response = await tenant.http.post("/recipient-lists", content=body(), headers=headers)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert sent < size // 2
