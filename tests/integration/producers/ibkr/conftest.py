from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.tws import FakeTws


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    """A fake TWS on a port of its own, for this test alone."""
    server = FakeTws()
    await server.start()
    yield server
    await server.aclose()
