"""Channels through the API and the pages, on a real broker and PostgreSQL: adding one (the
kind's rules, the URL guard, sealed at rest, a test message with its link published),
confirming it by that link, choosing, pausing and removing; one address never touches
another's channels."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from pricewatch.channels import URL_SEAL
from pricewatch.contract.records import ChannelConfirmation
from pricewatch.contract.topics import CHANNEL_CONFIRMATIONS
from pricewatch.db.engine import upgrade
from pricewatch.sealing import Sealer
from pricewatch.tokens import TokenPurpose
from tests.conftest import Broker
from tests.integration.api.test_api import (
    SECRET,
    SHOP,
    Api,
    api_settings,
    read_topic,
    running_api,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOOK = "http://127.0.0.1:8081/hooks/pricewatch-abcd"  # allow-listed in api_settings
BOT = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def manage(api: Api, email: str = "ann@example.com") -> dict[str, str]:
    return {"token": api.token(TokenPurpose.MANAGE, email)}


async def confirmations_published(api: Api, count: int) -> list[ChannelConfirmation]:
    return [
        ChannelConfirmation.model_validate_json(v)
        for _, _, v in await read_topic(api.settings, CHANNEL_CONFIRMATIONS, count)
    ]


async def add(api: Api, body: dict[str, Any], email: str = "ann@example.com") -> Any:
    response = await api.client.post("/api/manage/channels", params=manage(api, email), json=body)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_add_confirm_pause_resume_and_remove_a_webhook(api: Api) -> None:
    added = await add(api, {"kind": "webhook", "url": HOOK, "label": "my server"})
    channel_id = added["channel_id"]
    assert added["status"] == "pending" and added["label"] == "my server"
    assert added["target"] == "http://127.0.0.1:8081/…abcd"
    assert added["signing_secret"].startswith("whsec_")
    # Sealed at rest: neither the URL nor the secret is in the row, and the key opens it.
    [row] = api.rows("SELECT * FROM channels")
    assert HOOK.encode() not in bytes(row["url_sealed"])
    assert added["signing_secret"].encode() not in bytes(row["secret_sealed"])
    assert Sealer(SECRET.encode(), URL_SEAL).open(bytes(row["url_sealed"]), channel_id) == HOOK
    # Shown once: the list has no secret.
    listed = await (await api.client.get("/api/manage/channels", params=manage(api))).json()
    assert [c["channel_id"] for c in listed["channels"]] == [channel_id]
    assert "signing_secret" not in listed["channels"][0] and HOOK not in str(listed)

    # The test message, for the channels sink, with the link that confirms it.
    [test] = await confirmations_published(api, 1)
    assert (test.channel_id, test.email) == (channel_id, "ann@example.com")
    assert test.link.startswith("http://pricewatch.test/channels/confirm?token=")
    token = parse_qs(urlsplit(test.link).query)["token"][0]
    # Opening the link asks; the button (POST) confirms.
    page = await api.client.get("/channels/confirm", params={"token": token})
    assert page.status == 200 and "Confirm this channel" in await page.text()
    assert api.rows("SELECT status FROM channels") == [{"status": "pending"}]
    confirmed = await api.client.post("/api/channels/confirm", params={"token": token})
    assert (await confirmed.json())["status"] == "active"
    again = await api.client.post("/channels/confirm", params={"token": token})
    assert again.status == 200 and "Channel confirmed" in await again.text()
    # A manage token is no confirmation token.
    wrong = await api.client.post("/api/channels/confirm", params=manage(api))
    assert wrong.status == 403

    path = f"/api/manage/channels/{channel_id}"
    paused = await api.client.patch(path, params=manage(api), json={"paused": True})
    assert (await paused.json())["status"] == "paused"
    assert (await paused.json())["paused_reason"] == "owner"
    resumed = await api.client.patch(path, params=manage(api), json={"paused": False})
    assert (await resumed.json())["status"] == "active"
    # Another address's link neither sees nor changes it.
    bob = manage(api, "bob@example.com")
    assert (await api.client.patch(path, params=bob, json={"paused": True})).status == 404
    assert (await api.client.delete(path, params=bob)).status == 404
    assert (await api.client.delete(path, params=manage(api))).status == 204
    assert api.rows("SELECT count(*) AS n FROM channels") == [{"n": 0}]
    gone = await api.client.post("/api/channels/confirm", params={"token": token})
    assert gone.status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "webhook", "url": "http://10.0.0.8/hook"}, "url"),
        ({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}, "url"),  # not allow-listed
        ({"kind": "webhook", "url": "http://169.254.169.254/latest"}, "url"),
        ({"kind": "webhook", "url": "http://localhost:9/hook"}, "url"),
        ({"kind": "webhook", "url": "ftp://hooks.example.org/x"}, "url"),
        ({"kind": "webhook"}, "url"),
        ({"kind": "ntfy", "topic": "t", "server": "http://192.168.1.20"}, "server"),
        ({"kind": "telegram", "bot_token": "nope", "chat_id": "1"}, "bot_token"),
        ({"kind": "apprise", "url": "mailto://u:p@mail.example.org"}, "url"),
        ({"kind": "apprise", "url": "json://10.1.2.3/x"}, "url"),
        ({"kind": "carrier-pigeon", "url": "x"}, "kind"),
        ({"kind": "webhook", "url": HOOK, "extra": 1}, "extra"),
    ],
)
async def test_what_cannot_be_a_channel_gets_422_by_field_and_stores_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post("/api/manage/channels", params=manage(api), json=body)
    assert response.status == 422, await response.text()
    assert field in {e["field"] for e in (await response.json())["errors"]}
    assert api.rows("SELECT count(*) AS n FROM channels") == [{"n": 0}]


async def test_the_same_channel_twice_and_too_many_channels_are_409(
    broker: Broker, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url)
    settings = api_settings(broker, unique_prefix, tmp_path, postgres_url, channels_per_address=3)
    async with running_api(settings, postgres_url) as api:
        await add(api, {"kind": "telegram", "bot_token": BOT, "chat_id": "42"})
        twice = await api.client.post(
            "/api/manage/channels",
            params=manage(api),
            json={"kind": "telegram", "bot_token": BOT, "chat_id": "42"},
        )
        assert twice.status == 409 and (await twice.json())["reason"] == "exists"
        for n in range(2):
            await add(api, {"kind": "ntfy", "topic": f"topic-{n}"})
        full = await api.client.post(
            "/api/manage/channels", params=manage(api), json={"kind": "ntfy", "topic": "more"}
        )
        assert full.status == 409 and (await full.json())["reason"] == "too_many_channels"
        # Another address has its own.
        await add(api, {"kind": "ntfy", "topic": "topic-0"}, email="bob@example.com")
        assert api.rows("SELECT count(*) AS n FROM channels") == [{"n": 4}]


async def test_a_subscription_chooses_its_channels(api: Api) -> None:
    sub = await api.subscribe("ann@example.com", SHOP)
    first = await add(api, {"kind": "ntfy", "topic": "first"})
    second = await add(api, {"kind": "ntfy", "topic": "second"})
    theirs = await add(api, {"kind": "ntfy", "topic": "theirs"}, email="bob@example.com")
    path = f"/api/manage/subscriptions/{sub['subscription_id']}"
    view = await (await api.client.get("/api/manage", params=manage(api))).json()
    assert view["subscriptions"][0]["channels"] is None  # every channel
    assert {c["channel_id"] for c in view["channels"]} == {
        first["channel_id"],
        second["channel_id"],
    }
    response = await api.client.patch(
        path, params=manage(api), json={"channels": [second["channel_id"]]}
    )
    assert response.status == 200, await response.text()
    view = await (await api.client.get("/api/manage", params=manage(api))).json()
    assert view["subscriptions"][0]["channels"] == [second["channel_id"]]
    assert api.rows("SELECT channel_ids FROM channel_choices") == [
        {"channel_ids": [second["channel_id"]]}
    ]
    stranger = await api.client.patch(
        path, params=manage(api), json={"channels": [theirs["channel_id"]]}
    )
    assert stranger.status == 422
    none = await api.client.patch(path, params=manage(api), json={"channels": []})
    assert none.status == 200
    every = await api.client.patch(path, params=manage(api), json={"channels": None})
    assert every.status == 200
    assert api.rows("SELECT count(*) AS n FROM channel_choices") == [{"n": 0}]


async def test_the_manage_page_adds_acts_on_and_chooses_channels(api: Api) -> None:
    sub = await api.subscribe("ann@example.com", SHOP)
    params = manage(api)
    page = await (await api.client.get("/manage", params=params)).text()
    assert "Your channels" in page and "No channels yet." in page
    for kind in ("webhook", "ntfy", "telegram", "discord", "slack", "apprise"):
        assert f'<input type="hidden" name="kind" value="{kind}">' in page

    added = await api.client.post(
        "/manage/channels", params=params, data={"kind": "webhook", "url": HOOK, "label": ""}
    )
    assert added.status == 201
    shown = await added.text()
    assert (
        "Channel added" in shown
        and '<code id="signing-secret" style="overflow-wrap: anywhere;">whsec_' in shown
    )
    [row] = api.rows("SELECT channel_id, status FROM channels")
    refused = await api.client.post(
        "/manage/channels", params=params, data={"kind": "webhook", "url": "http://10.0.0.1/"}
    )
    assert refused.status == 422 and "url:" in await refused.text()

    page = await (await api.client.get("/manage", params=params)).text()
    assert "waiting for confirmation" in page and "Send the test message again" in page
    channel_path = f"/manage/channels/{row['channel_id']}"
    resend = await api.client.post(
        channel_path, params=params, data={"action": "test"}, allow_redirects=False
    )
    assert resend.status == 303 and "saved=test" in resend.headers["Location"]
    with api.engine.begin() as connection:  # as its test message's link would
        connection.execute(text("UPDATE channels SET status = 'active'"))
    pause = await api.client.post(channel_path, params=params, data={"action": "pause"})
    assert "Channel paused" in await pause.text()
    assert api.rows("SELECT status FROM channels") == [{"status": "paused"}]
    await api.client.post(channel_path, params=params, data={"action": "resume"})
    assert api.rows("SELECT status FROM channels") == [{"status": "active"}]

    # The subscription's form: only the ticked channel.
    page = await (await api.client.get("/manage", params=params)).text()
    assert 'name="channel" value="' + row["channel_id"] + '"' in page
    saved = await api.client.post(
        f"/manage/subscriptions/{sub['subscription_id']}",
        params=params,
        data={"target_price": "50", "active": "on", "channels_shown": "1"},
    )
    assert saved.status == 200 and "Saved." in await saved.text()
    assert api.rows("SELECT channel_ids FROM channel_choices") == [{"channel_ids": []}]
    await api.client.post(
        f"/manage/subscriptions/{sub['subscription_id']}",
        params=params,
        data={"target_price": "50", "active": "on", "channels_shown": "1", "channels_all": "on"},
    )
    assert api.rows("SELECT count(*) AS n FROM channel_choices") == [{"n": 0}]
    removed = await api.client.post(channel_path, params=params, data={"action": "remove"})
    assert "Channel removed" in await removed.text()
    assert api.rows("SELECT count(*) AS n FROM channels") == [{"n": 0}]
