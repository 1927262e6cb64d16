from __future__ import annotations

import psycopg
import pytest

from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.services import Found


@pytest.fixture(scope="session")
def migrated(services: Found) -> str:
    """The session database at the newest schema."""
    migrate.upgrade(Settings.from_env({"MARKET_DATA_DATABASE_URL": services.database_url}))
    return services.database_url


@pytest.fixture
async def sink_settings(settings: Settings, migrated: str, unique: str) -> Settings:
    """Settings for a sink of this test's own: its topics, its group, empty tables."""
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("TRUNCATE market_data_ticks, market_data_ohlcv")
    await ensure_topics(settings, settings.topics.all())
    return settings.model_copy(
        update={
            "sink_group": f"{unique}-sink",
            "metrics_port": 0,
            "sink_batch_rows": 2000,
            "sink_batch_ms": 100,
            "sink_max_backoff_s": 1.0,
        }
    )
