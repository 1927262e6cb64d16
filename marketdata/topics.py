"""Kafka topic names and message keys, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """The pipeline's topics; ``prefix`` lets several pipelines (or tests) share one cluster."""

    prefix: str = ""

    @property
    def ticks_raw(self) -> str:
        return f"{self.prefix}md.ticks.raw"

    @property
    def bars_raw(self) -> str:
        return f"{self.prefix}md.bars.raw"

    @property
    def ticks(self) -> str:
        return f"{self.prefix}md.ticks"

    @property
    def bars(self) -> str:
        return f"{self.prefix}md.bars"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}md.dlq"

    def all(self) -> tuple[str, ...]:
        return (self.ticks_raw, self.bars_raw, self.ticks, self.bars, self.dlq)


def instrument_key(exchange: str, symbol: str) -> bytes:
    """The Kafka key ``exchange:symbol``: one instrument stays ordered in one partition."""
    return f"{exchange}:{symbol}".encode()
