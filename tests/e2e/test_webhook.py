"""Signed TradingView alerts through `mdp webhook`, the processor and the sink."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

from tests.e2e.conftest import Pipeline
from tests.e2e.timeline import own_minute
from tests.integration.processors.support import free_port
from webhook.auth import sign

SECRET = "an-e2e-test-secret-of-32-bytes!!"
PUBLISHED = Path(__file__).parents[1] / "fixtures" / "tradingview" / "published"
ALERTS = 25


async def test_signed_alerts_land_as_tradingview_ticks(pipeline: Pipeline) -> None:
    t0 = own_minute()
    port = free_port()
    pipeline.start("webhook", ["webhook"], {"TRADINGVIEW_HMAC_SECRET": SECRET,
                                            "MDP_WEBHOOK_PORT": str(port)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            try:
                async with session.get(f"{url}/health") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        up = False
        async with asyncio.timeout(30):
            while not up:
                up = await answers()
                await asyncio.sleep(0.2)
        alerts = [{"ticker": "AAPL", "exchange": "NASDAQ", "price": f"{190 + n / 100:.2f}",
                   "volume": str(n + 1), "time": (t0 + timedelta(seconds=n)).isoformat(),
                   "side": "buy" if n % 2 else "sell", "strategy": "e2e"}
                  for n in range(ALERTS)]  # fmt: skip
        forged = {"X-Signature": "sha256=" + "0" * 64}
        body = json.dumps({**alerts[0], "price": "1.00"}).encode()
        async with session.post(f"{url}/webhooks/tradingview", data=body,
                                headers=forged) as response:  # fmt: skip
            assert response.status == 401  # and never published: the price 1.00 is not stored
        # Poison signed like the rest, timed inside the window: had one got through, the rows
        # below would show it (and a 20,000-digit price used to stop the sink for good).
        poison = [
            (json.dumps({**alerts[0], "price": "1." + "0" * 20_000}).encode(), 422),
            (json.dumps({**alerts[0], "id": "x" * 3_000}).encode(), 422),
            (json.dumps({**alerts[0], "ticker": "A" * 3_000}).encode(), 422),
            (json.dumps(alerts[0]).encode()[:-1] + b', "deep": ' + b"[" * 3_000 + b"]" * 3_000
             + b"}", 400),
        ]  # fmt: skip
        for body, status in poison:
            headers = {"X-Signature": "sha256=" + sign(body, SECRET.encode())}
            async with session.post(f"{url}/webhooks/tradingview", data=body,
                                    headers=headers) as response:  # fmt: skip
                assert response.status == status, await response.text()
        for alert in alerts:
            body = json.dumps(alert).encode()
            headers = {"X-Signature": "sha256=" + sign(body, SECRET.encode())}
            async with session.post(f"{url}/webhooks/tradingview", data=body,
                                    headers=headers) as response:  # fmt: skip
                assert response.status == 202, await response.text()

    rows = await pipeline.ticks("NASDAQ", "AAPL", t0, t0 + timedelta(minutes=1), at_least=ALERTS)
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (t0 + timedelta(seconds=n), Decimal(a["price"]), Decimal(a["volume"]), a["side"],
         "TradingView") for n, a in enumerate(alerts)
    ]  # fmt: skip
    assert pipeline.roles["webhook"].poll() is None  # still serving


async def test_a_published_tradingview_strategy_alert_is_stored_as_its_tick(
    pipeline: Pipeline,
) -> None:
    # A strategy alert in a layout TradingView users publish (nested bar and strategy objects,
    # the price in strategy.order_price), sent as TradingView sends it: a fixed body with the
    # passphrase inside, no headers of its own. See tests/fixtures/tradingview/published.
    fixture = json.loads((PUBLISHED / "strategy_bar_nested.json").read_text())
    port = free_port()
    pipeline.start("webhook", ["webhook"], {"MDP_WEBHOOK_AUTH": "passphrase",
                                            "TRADINGVIEW_PASSPHRASE": SECRET,
                                            "MDP_WEBHOOK_PORT": str(port)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    body = fixture["filled"].replace("@PASSPHRASE@", SECRET).encode()
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with session.post(f"{url}/webhooks/tradingview", data=body) as response:
                        status, text = response.status, await response.text()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)  # not listening yet
        assert status == 202, text
    expected = fixture["expected"]
    at = datetime.fromisoformat(expected["timestamp"])
    rows = await pipeline.ticks(expected["exchange"], expected["symbol"], at,
                                at + timedelta(seconds=1), at_least=1)  # fmt: skip
    assert [r[1:] for r in rows] == [
        (at, Decimal(expected["price"]), Decimal(expected["size"]), expected["side"],
         "TradingView")
    ]  # fmt: skip
