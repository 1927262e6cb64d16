from __future__ import annotations

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import free_port


@pytest.fixture
async def processor_settings(settings: Settings, unique: str) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    # The batch processor alone: derived bars (on by default) would add bars to md.bars and
    # records to its counters; they are tested in tests/e2e/test_derived_bars.py.
    return settings.model_copy(
        update={"process_group": f"{unique}-processor", "process_web_port": free_port(),
                "bars_enabled": False}
    )  # fmt: skip
