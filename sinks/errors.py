"""Which failures of a batch write are worth retrying, and which are the rows' own fault.

One pure function, :func:`classify`, decides for the whole sink, by SQLSTATE class first:

- retried (the same write can succeed later): connection exceptions (class 08) and client-side
  connection failures (an ``OperationalError`` without a SQLSTATE), serialization failures and
  deadlocks (class 40), insufficient resources (53), operator intervention and shutdowns (57),
  system errors (58);
- rejected (some row can never be stored as it is): data exceptions (22), integrity violations
  (23; the duplicate key the writer expects never gets here), program limits (54, e.g. an index
  row over the btree maximum; psycopg files ``ProgramLimitExceeded`` under
  ``OperationalError``, which is why the class is read, not the Python type), and what the client
  raises while dumping a row (``DataError``/``ProgrammingError`` without a SQLSTATE, such as a
  decimal too precise for the binary numeric format, ``UnicodeEncodeError``, ``ValueError``,
  ``TypeError``, ``ArithmeticError``).

Anything else (our own :class:`~marketdata.errors.TransientError`, a missing table, a
permission, a bug) is not the rows' fault either: it is retried too, so that a misconfigured
database pauses the stream instead of dead-lettering it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import psycopg

from marketdata.errors import MarketDataError

RETRIED_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})
REJECTED_CLASSES: Final = frozenset({"22", "23", "54"})
# Raised by psycopg while turning a Python value into the wire format of its column.
DUMP_ERRORS: Final = (ValueError, TypeError, ArithmeticError)


class Verdict(enum.Enum):
    RETRY = "retry"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Failure:
    verdict: Verdict
    reason: str  # the database's (or the client's) message, first line, with its SQLSTATE

    @property
    def retriable(self) -> bool:
        return self.verdict is Verdict.RETRY


def classify(exc: BaseException) -> Failure:
    """Say whether a failed write should be retried as it is or its rows isolated."""
    return Failure(_verdict(exc), describe(exc))


def _verdict(exc: BaseException) -> Verdict:
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        if sqlstate:
            return Verdict.REJECT if sqlstate[:2] in REJECTED_CLASSES else Verdict.RETRY
        # No SQLSTATE: raised by the client, not the server.
        if isinstance(exc, psycopg.DataError | psycopg.ProgrammingError):
            return Verdict.REJECT
        return Verdict.RETRY
    if isinstance(exc, DUMP_ERRORS):
        return Verdict.REJECT
    return Verdict.RETRY


def describe(exc: BaseException) -> str:
    """One line for a log or a dead-letter header: ``[SQLSTATE] message`` when there is one."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if sqlstate:
        return f"[{sqlstate}] {first}"
    if isinstance(exc, psycopg.Error | MarketDataError) or not text:
        return first  # written for people already
    return f"{type(exc).__name__}: {first}"
