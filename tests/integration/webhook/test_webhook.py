"""The webhook served by uvicorn on loopback, publishing to a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from marketdata.errors import ConfigError
from marketdata.kafka import ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from tests.integration.processors.support import read_ticks
from tests.integration.webhook.serving import serving
from webhook.app import create_app
from webhook.auth import sign

SECRET = "a-webhook-secret-of-32-bytes-xyz"
PASSPHRASE = "open sesame"


def alert(n: int = 0, **changes: object) -> bytes:
    document: dict[str, object] = {
        "ticker": "BTCUSDT", "exchange": "BINANCE", "price": f"{61000 + n}.5", "volume": "0.25",
        "time": "2024-03-01T12:00:00Z", "side": "buy", "strategy": "breakout", "n": n,
        "passphrase": PASSPHRASE,
    }  # fmt: skip
    document.update(changes)
    return json.dumps(document).encode()


@pytest.fixture
async def webhook(settings: Settings, tmp_path: object) -> AsyncIterator[tuple[str, Settings]]:
    await ensure_topics(settings, settings.topics.all())
    configured = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_WEBHOOK_AUTH": "signature,passphrase",
        "TRADINGVIEW_HMAC_SECRET": SECRET,
        "TRADINGVIEW_PASSPHRASE": PASSPHRASE,
        "MDP_WEBHOOK_MAX_BODY": "1024",
        "MDP_WEBHOOK_SPOOL_DIR": str(tmp_path),
    })  # fmt: skip
    async with serving(configured) as url:
        yield url, configured


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/webhooks/tradingview", data=body, headers=headers or {}) as response,
    ):
        return response.status, await response.text()


def signed(body: bytes) -> dict[str, str]:
    return {"X-Signature": "sha256=" + sign(body, SECRET.encode()),
            "Content-Type": "text/plain; charset=utf-8"}  # fmt: skip


async def published(settings: Settings, idle_s: float = 2) -> list[Tick]:
    return await read_ticks(
        settings, settings.topics.ticks_raw, key=b"BINANCE:BTCUSDT", idle_s=idle_s
    )


async def test_a_signed_alert_is_202_and_one_tick_with_every_field(
    webhook: tuple[str, Settings],
) -> None:
    url, settings = webhook
    body = alert()
    status, text = await post(url, body, signed(body))
    assert status == 202, text
    (tick,) = await published(settings)
    assert (tick.exchange, tick.symbol, tick.source, tick.side) == (
        "BINANCE", "BTCUSDT", "TradingView", "buy")  # fmt: skip
    assert tick.timestamp == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert (tick.price, tick.size) == (Decimal("61000.5"), Decimal("0.25"))
    assert tick.extras == {"strategy": "breakout", "n": 0}  # the passphrase is gone
    assert json.loads(text)["trade_id"] == tick.trade_id


async def test_the_same_alert_again_is_acknowledged_but_published_once(
    webhook: tuple[str, Settings],
) -> None:
    url, settings = webhook
    body = alert(7)
    assert (await post(url, body, signed(body)))[0] == 202
    status, text = await post(url, body, signed(body))
    assert (status, json.loads(text)["status"]) == (200, "duplicate")
    assert len(await published(settings)) == 1


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda b: {}, 401, "missing X-Signature"),
        (lambda b: {"X-Signature": "sha1=" + sign(b, SECRET.encode())}, 401, "bad X-Signature"),
        (lambda b: {"X-Signature": sign(b + b" ", SECRET.encode())}, 401, "bad X-Signature"),
    ],
)  # fmt: skip
async def test_bad_signatures_publish_nothing(
    webhook: tuple[str, Settings], make: object, status: int, words: str
) -> None:
    url, settings = webhook
    body = alert()
    got, text = await post(url, body, make(body))  # type: ignore[operator]
    assert (got, json.loads(text)["error"]) == (status, words)
    assert await published(settings, idle_s=1) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (alert(passphrase="wrong"), 401),
        (b"{not json", 400),
        (alert(price="lots"), 422),
        (alert(ticker=5), 422),
        (alert(pad="x" * 2000), 413),
    ],
)
async def test_bad_alerts_get_their_status_and_publish_nothing(
    webhook: tuple[str, Settings], body: bytes, status: int
) -> None:
    url, settings = webhook
    assert (await post(url, body, signed(body)))[0] == status
    assert await published(settings, idle_s=1) == []


async def test_fuzzed_requests_never_500_and_never_publish_unauthenticated(
    webhook: tuple[str, Settings],
) -> None:
    url, settings = webhook
    statuses: list[int] = []

    @hypothesis_settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(st.binary(max_size=1500), st.dictionaries(
        st.sampled_from(["X-Signature", "Content-Type", "X-Forwarded-For", "Content-Length"]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
        max_size=3))  # fmt: skip
    def fuzz(body: bytes, headers: dict[str, str]) -> None:
        headers.pop("Content-Length", None)
        status, _ = asyncio.run_coroutine_threadsafe(post(url, body, headers), loop).result(10)
        statuses.append(status)
        assert status < 500

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(fuzz)
    assert statuses
    assert set(statuses) <= {400, 401, 413, 422}
    assert await published(settings, idle_s=1) == []


async def test_health_and_metrics(webhook: tuple[str, Settings]) -> None:
    url, _ = webhook
    body = alert(3)
    await post(url, body, signed(body))
    await post(url, b"x", {})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/health") as health:
            assert (health.status, await health.text()) == (200, "ready: kafka connected\n")
        async with session.get(f"{url}/metrics") as metrics:
            lines = (await metrics.text()).splitlines()
    assert 'mdp_webhook_requests_total{status="202"} 1.0' in lines
    assert 'mdp_webhook_requests_total{status="401"} 1.0' in lines
    assert any(line.startswith("mdp_webhook_publish_seconds_count 1.0") for line in lines)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "TRADINGVIEW_HMAC_SECRET: required"),
        ({"TRADINGVIEW_HMAC_SECRET": "short"}, "at least 16 bytes"),
        ({"TRADINGVIEW_HMAC_SECRET": SECRET, "MDP_WEBHOOK_AUTH": "passphrase"},
         "TRADINGVIEW_PASSPHRASE: required"),
    ],
)  # fmt: skip
def test_the_app_refuses_to_start_without_its_secrets(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        create_app(Settings.from_env(env))
    assert "short" not in str(caught.value)


@asynccontextmanager
async def _allowlisting(
    settings: Settings, spool_dir: object, **env: str
) -> AsyncIterator[tuple[str, Settings]]:
    """The webhook checking signatures and source addresses (``env`` says which), this test's
    topics made: its URL and its settings."""
    await ensure_topics(settings, settings.topics.all())
    configured = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_WEBHOOK_AUTH": "signature,allowlist",
        "TRADINGVIEW_HMAC_SECRET": SECRET,
        "MDP_WEBHOOK_SPOOL_DIR": str(spool_dir),
        **env,
    })  # fmt: skip
    async with serving(configured) as url:
        yield url, configured


async def test_a_disallowed_source_address_is_403_and_publishes_nothing(
    settings: Settings, tmp_path: object
) -> None:
    # Allowed: TradingView and 10.0.0.0/8, not 127.0.0.1, where the test is.
    allowlisting = _allowlisting(settings, tmp_path, MDP_WEBHOOK_ALLOW="tradingview,10.0.0.0/8")
    async with allowlisting as (url, configured):
        body = alert(1)
        forged = {**signed(body), "X-Forwarded-For": "52.89.214.238"}  # not trusted by default
        status, text = await post(url, body, forged)
    assert (status, json.loads(text).get("error")) == (403, "source address not allowed"), text
    assert await published(configured, idle_s=1) == []


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        # The client forges TradingView's address in a line of its own; the proxy appends the
        # real peer's in another. Only the proxy's, the right-most, may decide.
        (["52.89.214.238", "8.8.8.8"], 403),
        (["52.89.214.238, 10.9.9.9", "8.8.8.8"], 403),
        (["8.8.8.8", "52.89.214.238"], 202),
    ],
)
async def test_behind_a_trusted_proxy_the_right_most_of_all_header_lines_is_the_client(
    settings: Settings, tmp_path: object, lines: list[str], status: int
) -> None:
    allowlisting = _allowlisting(settings, tmp_path, MDP_WEBHOOK_ALLOW="tradingview",
                                 MDP_WEBHOOK_TRUSTED_PROXY_HEADER="X-Forwarded-For")  # fmt: skip
    async with allowlisting as (url, configured):
        body = alert(2)
        headers = CIMultiDict(signed(body))
        for line in lines:
            headers.add("X-Forwarded-For", line)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/webhooks/tradingview", data=body, headers=headers) as response,
        ):
            got, text = response.status, await response.text()
    assert got == status, text
    assert len(await published(configured, idle_s=1)) == (1 if status == 202 else 0)
