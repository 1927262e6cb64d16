"""Against the real Binance: run with PROVIDERS_SANDBOX_MODE=official (needs the internet)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from marketdata.settings import Settings
from producers.binance.connector import rest_client
from producers.binance.history import KlinePager

pytestmark = pytest.mark.skipif(
    os.environ.get("PROVIDERS_SANDBOX_MODE") != "official",
    reason="PROVIDERS_SANDBOX_MODE is not 'official'",
)


def test_real_klines_page_and_normalise() -> None:
    settings = Settings.from_env()
    client = rest_client(settings)
    try:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
        pager = KlinePager(client, "BTCUSDT", "1m", start, start + timedelta(minutes=59))
        server_time = pager.server_time()
        ((bars, rejected),) = list(pager.pages(server_time))
    finally:
        client.session.close()
    assert rejected == []
    assert len(bars) == 60
    assert all(bar.closed and bar.high >= bar.low for bar in bars)
    assert pager.used_weight > 0
