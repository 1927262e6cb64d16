"""The one exception hierarchy of the project.

Every error a caller may want to handle is a :class:`MarketDataError`; ``retriable`` tells a
supervisor whether trying the same thing again later can succeed. Third-party errors are
translated into these at one boundary per library (see ``marketdata.kafka.kafka_errors``).
"""

from __future__ import annotations


class MarketDataError(Exception):
    """Base of every error raised on purpose by this project."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(MarketDataError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidRecord(MarketDataError, ValueError):
    """A tick or bar breaks the contract; ``field`` names the offending field.

    It is a ``ValueError`` so that msgspec turns it into a decode error with a JSON path.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class DecodeError(MarketDataError):
    """A Kafka message could not be decoded into records; ``reason`` goes to the dead letters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceError(MarketDataError):
    """A local service (Kafka, PostgreSQL) could not be installed, started or stopped."""


class TransientError(MarketDataError):
    """A failure that may pass by itself: a broker or database that is briefly away."""

    retriable = True
