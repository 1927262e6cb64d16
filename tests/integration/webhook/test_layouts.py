"""Alert messages TradingView users published (tests/fixtures/tradingview/published), filled and
unfilled, through the webhook over HTTP in passphrase mode (the one TradingView itself can use),
each published tick read back from the raw topic field by field."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from marketdata.errors import ConfigError
from marketdata.kafka import ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from tests.integration.processors.support import read_ticks
from tests.integration.webhook.serving import serving
from webhook.app import create_app

PASSPHRASE: Final = "open sesame"
PUBLISHED: Final = Path(__file__).resolve().parents[2] / "fixtures" / "tradingview" / "published"
LAYOUTS: Final[dict[str, dict[str, Any]]] = {
    path.stem: json.loads(path.read_text()) for path in sorted(PUBLISHED.glob("*.json"))
}
TICK_LAYOUTS: Final = sorted(n for n, d in LAYOUTS.items() if "symbol" in d["expected"])


def body_of(text: str) -> bytes:
    return text.replace("@PASSPHRASE@", PASSPHRASE).encode()


@asynccontextmanager
async def webhook(settings: Settings, spool: Path, **env: str) -> AsyncIterator[str]:
    await ensure_topics(settings, settings.topics.all())
    configured = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_WEBHOOK_AUTH": "passphrase",
        "TRADINGVIEW_PASSPHRASE": PASSPHRASE,
        "MDP_WEBHOOK_SPOOL_DIR": str(spool),
        **env,
    })  # fmt: skip
    async with serving(configured) as url:
        yield url


async def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "text/plain; charset=utf-8"}  # what TradingView sends
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/webhooks/tradingview", data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


async def published(settings: Settings, idle_s: float = 2) -> list[Tick]:
    return await read_ticks(settings, settings.topics.ticks_raw, idle_s=idle_s)


def _env(layout: dict[str, Any]) -> dict[str, str]:
    return {"MDP_WEBHOOK_FIELDS": layout["fields"]} if "fields" in layout else {}


@pytest.mark.parametrize("name", TICK_LAYOUTS)
async def test_a_filled_published_alert_is_stored_as_its_tick(
    settings: Settings, tmp_path: Path, name: str
) -> None:
    layout = LAYOUTS[name]
    expected = layout["expected"]
    async with webhook(settings, tmp_path, **_env(layout)) as url:
        before = datetime.now(UTC)
        status, answer = await post(url, body_of(layout["filled"]))
        after = datetime.now(UTC)
    assert status == 202, answer
    (tick,) = await published(settings)
    assert (tick.exchange, tick.symbol, tick.source) == (
        expected["exchange"], expected["symbol"], "TradingView")  # fmt: skip
    if expected["timestamp"] == "received":
        assert before <= tick.timestamp <= after
    else:
        assert tick.timestamp == datetime.fromisoformat(expected["timestamp"])
    assert (tick.price, tick.size, tick.side) == (
        Decimal(expected["price"]), Decimal(expected["size"]), expected["side"])  # fmt: skip
    assert tick.extras == expected["extras"]  # the passphrase and the mapped paths are gone
    assert tick.trade_id == answer["trade_id"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
async def test_an_unfilled_published_template_is_400_naming_the_placeholder(
    settings: Settings, tmp_path: Path, name: str
) -> None:
    layout = LAYOUTS[name]
    async with webhook(settings, tmp_path, **_env(layout)) as url:
        status, answer = await post(url, body_of(layout["template"]))
    unfilled = layout["unfilled"]
    assert (status, answer) == (unfilled["status"], {"error": unfilled["error"]})
    assert await published(settings, idle_s=1) == []


async def test_alerts_the_mapping_cannot_take_get_their_status_and_message(
    settings: Settings, tmp_path: Path
) -> None:
    value_alert = LAYOUTS["price_alert_value"]
    plain = LAYOUTS["plain_text_docs"]
    async with webhook(settings, tmp_path) as url:
        without_fields = await post(url, body_of(value_alert["filled"]))
        status, answer = await post(url, body_of(plain["filled"]))
    assert without_fields == (422, {"error": value_alert["without_fields"]["error"]})
    assert status == 400
    assert answer["error"].startswith(plain["expected"]["error_starts"])
    assert await published(settings, idle_s=1) == []


def _alert(**fields: object) -> bytes:
    return json.dumps({"passphrase": PASSPHRASE, "ticker": "BINANCE:BTCUSDT", "close": "61000.5",
                       **fields}).encode()  # fmt: skip


async def test_epoch_seconds_are_seconds_and_impossible_times_are_422_naming_the_path(
    settings: Settings, tmp_path: Path
) -> None:
    async with webhook(settings, tmp_path, MDP_WEBHOOK_DEFAULT_EXCHANGE="tv") as url:
        seconds = await post(url, _alert(time=1709294400, n=1))
        millis = await post(url, _alert(bar={"time": "1709294460000"}, n=2))
        old = await post(url, _alert(time=946684799))
        ahead = await post(url, _alert(timenow="2099-01-01T00:00:00Z"))
        no_exchange = await post(url, json.dumps({"passphrase": PASSPHRASE, "symbol": "ETHUSDT",
                                                  "price": 1}).encode())  # fmt: skip
    assert (seconds[0], millis[0], no_exchange[0]) == (202, 202, 202), (seconds, millis)
    assert old == (422, {"error": "time: before 2000: 1999-12-31T23:59:59+00:00"})
    future = "timenow: more than a day in the future: 2099-01-01T00:00:00+00:00"
    assert ahead == (422, {"error": future})
    ticks = sorted(await published(settings), key=lambda t: t.extras["n"] if t.extras else 0)
    (default,) = [t for t in ticks if t.symbol == "ETHUSDT"]
    assert (default.exchange, default.price, default.extras) == ("TV", Decimal(1), None)
    ticks.remove(default)
    assert [(t.exchange, t.symbol, t.price, t.timestamp) for t in ticks] == [
        ("BINANCE", "BTCUSDT", Decimal("61000.5"), datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("BINANCE", "BTCUSDT", Decimal("61000.5"), datetime(2024, 3, 1, 12, 1, tzinfo=UTC)),
    ]
    assert [t.extras for t in ticks] == [{"n": 1}, {"n": 2}]  # the emptied `bar` is gone too


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("cost=close", "MDP_WEBHOOK_FIELDS: unknown field 'cost'"),
        ("price", "MDP_WEBHOOK_FIELDS: 'price' is not field=path"),
        ("price=bar..close", "MDP_WEBHOOK_FIELDS: price: bad path 'bar..close'"),
        ("price=a,price=b", "MDP_WEBHOOK_FIELDS: price given twice"),
    ],
)
def test_the_app_refuses_to_start_with_a_bad_field_mapping(spec: str, words: str) -> None:
    env = {"MDP_WEBHOOK_AUTH": "passphrase", "TRADINGVIEW_PASSPHRASE": PASSPHRASE,
           "MDP_WEBHOOK_FIELDS": spec}  # fmt: skip
    with pytest.raises(ConfigError, match=words):
        create_app(Settings.from_env(env))


_VALUES: Final = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**66), 2**66), st.text(max_size=12),
    st.sampled_from(["61000.5", "0.19012", "buy", "SELL", "long", "NASDAQ:AAPL", "BINANCE:",
                     "2024-03-01T12:00:00Z", "1709294400", "1709294400000", "1999-01-01T00:00:00Z",
                     "{{close}}", "NaN", "1e40", ""]),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
_PATHS: Final = ("ticker", "symbol", "exchange", "price", "close", "bar.close", "bar.time",
                 "strategy.order.price", "strategy.order_action", "quantity", "volume", "time",
                 "timenow", "side", "action", "id", "note")  # fmt: skip


def _nest(fields: dict[str, object]) -> dict[str, object]:
    document: dict[str, Any] = {"passphrase": PASSPHRASE}
    for path, value in fields.items():
        *parents, leaf = path.split(".")
        node = document
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return document


async def test_random_layouts_never_500_and_every_202_is_published(
    settings: Settings, tmp_path: Path
) -> None:
    """Bodies of random recognised paths and values, through an app whose mapping is overridden
    too: never a 500, and every 202 names a tick that is in the raw topic afterwards."""
    accepted: dict[str, int] = {}
    statuses: list[int] = []
    async with webhook(settings, tmp_path, MDP_WEBHOOK_FIELDS="price=bar.close|price,size=volume",
                       MDP_WEBHOOK_DEFAULT_EXCHANGE="TV") as url:  # fmt: skip
        loop = asyncio.get_running_loop()

        @hypothesis_settings(
            max_examples=80, deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )  # fmt: skip
        @given(st.dictionaries(st.sampled_from(_PATHS), _VALUES, max_size=8))
        @example({"ticker": "NASDAQ:AAPL", "bar.close": "189.84", "price": "1"})
        def fuzz(fields: dict[str, object]) -> None:
            body = json.dumps(_nest(fields)).encode()
            status, answer = asyncio.run_coroutine_threadsafe(post(url, body), loop).result(10)
            statuses.append(status)
            assert status in {200, 202, 400, 422}, (status, answer)
            if status == 202:
                accepted[answer["trade_id"]] = accepted.get(answer["trade_id"], 0) + 1

        await asyncio.to_thread(fuzz)
    assert statuses
    assert accepted  # the explicit example at least
    stored = {tick.trade_id for tick in await published(settings)}
    assert set(accepted) <= stored
