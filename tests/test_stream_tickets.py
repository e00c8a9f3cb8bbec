"""WS /v1/stream on a server with an API key: a program streams with the key in the handshake, a
browser page with a single-use ticket from POST /v1/stream/tickets (which the page's login session
may ask for); without either, or with a ticket that is forged, used or expired, the stream gets an
`unauthorized` error event and close code 4401 (serving/stream_tickets.py, docs/serving.md)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from ser_lightning.serving.schemas import Problem, StreamTicket
from ser_lightning.serving.server import build_app
from ser_lightning.serving.stream_tickets import StreamTickets
from ser_lightning.serving.streaming_events import CLOSE_UNAUTHORIZED

from .helpers.serving import serve_config, served

API_KEY = "a-stream-key-of-32-characters-ok"
WS = "ws://localhost/v1/stream?format=s16le"


@pytest.fixture(scope="module")
def keyed(tiny_served_model, tmp_path_factory):
    cfg = serve_config(tiny_served_model, tmp_path_factory.mktemp("keyed_stream"), "web=false")
    app = build_app(cfg, environ={"SER_API_KEY": API_KEY})
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def first_event(client, url: str, headers: dict | None = None) -> tuple[dict, int]:
    """Open a stream: its first event, and (after `{"type": "end"}` when it opened) the close code."""
    with client.websocket_connect(url, headers=headers or {}) as ws:
        event = ws.receive_json()
        if event["type"] == "ready":
            ws.send_text(json.dumps({"type": "end"}))
            assert ws.receive_json()["type"] == "end"
        closing = ws.receive()
    assert closing["type"] == "websocket.close"
    return event, closing["code"]


def ticket(client, headers: dict | None = None) -> str:
    answer = client.post(
        "/v1/stream/tickets", headers=headers if headers is not None else {"X-API-Key": API_KEY}
    )
    assert answer.status_code == 200, answer.text
    return StreamTicket.model_validate(answer.json()).ticket


# --------------------------------------------------------------------------- the ticket book
def test_a_ticket_opens_once_before_it_expires_and_few_are_kept():
    now = [100.0]
    tickets = StreamTickets(ttl_s=30.0, max_outstanding=3, clock=lambda: now[0])
    first, second = tickets.issue(), tickets.issue()
    assert first != second and len(first) == 43  # 256 random bits, URL-safe base64
    assert tickets.redeem(first) and not tickets.redeem(first)  # single use
    assert not tickets.redeem("forged") and not tickets.redeem("")
    now[0] += 30.0
    assert not tickets.redeem(second)  # expired at ttl_s, and gone
    # at most max_outstanding are kept: issuing more forgets the oldest
    kept = [tickets.issue() for _ in range(4)]
    assert not tickets.redeem(kept[0]) and all(tickets.redeem(t) for t in kept[1:])
    assert (tickets.issued, tickets.redeemed) == (6, 4)


# --------------------------------------------------------------------------- a keyed server
@pytest.mark.parametrize(
    ("query", "headers", "said"),
    [
        ("", {}, "X-API-Key"),
        ("", {"X-API-Key": API_KEY[:-1] + "x"}, "X-API-Key"),
        ("", {"Authorization": "Basic " + API_KEY}, "X-API-Key"),
        (f"&api_key={API_KEY}", {}, "X-API-Key"),  # the key never counts in the URL
        ("&ticket=" + "A" * 43, {}, "ticket is not valid"),
    ],
)
def test_a_stream_without_the_key_or_a_ticket_is_refused_with_4401(keyed, query, headers, said):
    event, code = first_event(keyed, WS + query, headers)
    assert event["type"] == "error" and event["code"] == "unauthorized" and said in event["detail"]
    assert code == event["close_code"] == CLOSE_UNAUTHORIZED == 4401


def test_the_key_in_the_handshake_or_a_ticket_opens_a_stream_and_a_ticket_opens_only_one(keyed):
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
        event, code = first_event(keyed, WS, headers)
        assert event["type"] == "ready" and code == 1000
    refused = keyed.post("/v1/stream/tickets")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert Problem.model_validate(refused.json()).instance == "/v1/stream/tickets"
    answer = keyed.post("/v1/stream/tickets", headers={"Authorization": f"Bearer {API_KEY}"})
    assert StreamTicket.model_validate(answer.json()).expires_in_s == 30.0
    once = answer.json()["ticket"]
    event, code = first_event(keyed, f"{WS}&ticket={once}")
    assert event["type"] == "ready" and code == 1000
    event, code = first_event(keyed, f"{WS}&ticket={once}")  # used: refused
    assert (event["code"], code) == ("unauthorized", 4401) and "used before" in event["detail"]
    # a ticket is checked even beside the key: a client that sends one means to use it
    event, code = first_event(keyed, f"{WS}&ticket={once}", {"X-API-Key": API_KEY})
    assert code == 4401
    # the document declares the endpoint, its answer and the key
    spec = keyed.get("/openapi.json").json()
    operation = spec["paths"]["/v1/stream/tickets"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StreamTicket"
    }
    assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}] and "401" in operation["responses"]
    assert spec["components"]["schemas"]["StreamTicket"]["required"] == ["ticket", "expires_in_s"]


def test_an_expired_ticket_is_refused(keyed):
    tickets = keyed.app.state.stream_tickets
    late = ticket(keyed)
    clock = tickets.clock
    tickets.clock = lambda: clock() + tickets.ttl_s  # the same clock, 30 s on
    try:
        event, code = first_event(keyed, f"{WS}&ticket={late}")
    finally:
        tickets.clock = clock
    assert (event["code"], code) == ("unauthorized", 4401)


# --------------------------------------------------------------------------- the page's login
def test_the_pages_login_session_gets_the_live_page_and_tickets_and_a_program_streams_with_its_key(
    tiny_served_model, tmp_path
):
    """The real server (uvicorn, the page mounted, a key): /live and the tickets need the page's
    login (Gradio's, user `ser`, the key as password), from the server's own pages only; the
    Python client streams with the key, or with a ticket, and is refused with 4401 without."""
    from ser_lightning.serving.streaming_client import StreamClient

    with served(
        tiny_served_model,
        tmp_path / "run",
        f"upload_dir={tmp_path}",
        "log_level=warning",
        environ={"SER_API_KEY": API_KEY},
    ) as (url, _, _):
        stranger = httpx.get(f"{url}/live", timeout=30, follow_redirects=False)
        assert stranger.status_code == 303 and stranger.headers["location"] == "./"
        assert httpx.post(f"{url}/v1/stream/tickets", timeout=30).status_code == 401
        login = httpx.post(f"{url}/login", data={"username": "ser", "password": API_KEY}, timeout=30)
        assert login.status_code == 200, login.text
        with httpx.Client(base_url=url, cookies=login.cookies, timeout=30) as page:
            live = page.get("/live")
            assert live.status_code == 200 and "v1/stream/tickets" in live.text
            own = page.post("/v1/stream/tickets", headers={"Origin": url})
            assert own.status_code == 200, own.text
            # a page of another site, with the same cookies: refused before the session is looked at
            assert (
                page.post("/v1/stream/tickets", headers={"Origin": "http://evil.example"}).status_code == 403
            )
        forged = {name: "not-a-session" for name in login.cookies}
        assert httpx.post(f"{url}/v1/stream/tickets", cookies=forged, timeout=30).status_code == 401
        stream = url.replace("http://", "ws://") + "/v1/stream?format=s16le"

        async def opened(address: str, api_key: str | None = None) -> tuple[str, int | None]:
            client = await StreamClient.connect(address, api_key=api_key)
            first = await client.event()
            if first["type"] == "ready":
                await client.send_audio(bytes(3200))
                await client.end()
            events = [first] + [e async for e in client.events()]
            return events[0]["type"], client.close_code

        assert asyncio.run(opened(stream, api_key=API_KEY)) == ("ready", 1000)
        assert asyncio.run(opened(f"{stream}&ticket={own.json()['ticket']}")) == ("ready", 1000)
        assert asyncio.run(opened(stream)) == ("error", 4401)
