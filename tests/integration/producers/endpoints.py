"""A role's ``/health`` and ``/metrics``, polled over HTTP as a supervisor or Prometheus would."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str) -> tuple[int, str] | None:
    """The status and body of ``url``; None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


class Endpoints:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def health(self, wanted: int, within: float = 30) -> None:
        """Poll ``/health`` until it answers ``wanted``; fail the test otherwise."""
        async with asyncio.timeout(within):
            while True:
                answer = await asyncio.to_thread(_get, f"{self.base}/health")
                if answer is not None and answer[0] == wanted:
                    return
                await asyncio.sleep(0.1)

    async def metrics(self) -> Samples:
        answer = await asyncio.to_thread(_get, f"{self.base}/metrics")
        assert answer is not None
        assert answer[0] == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer[1])
            for sample in family.samples
        }

    async def metrics_until(self, condition: Callable[[Samples], bool]) -> Samples:
        async with asyncio.timeout(30):
            while True:
                samples = await self.metrics()
                if condition(samples):
                    return samples
                await asyncio.sleep(0.1)
