from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from marketdata.errors import InvalidRecord, TransientError
from sinks.errors import Verdict, classify, describe


@pytest.mark.parametrize(
    "sqlstate",
    ["08000", "08006", "40001", "40P01", "53100", "53200", "57P01", "57P02", "57P03", "58030"],
)
def test_connection_loss_races_and_shutdowns_are_retried(sqlstate: str) -> None:
    failure = classify(errors.lookup(sqlstate)("it went away"))
    assert failure.verdict is Verdict.RETRY
    assert failure.retriable


@pytest.mark.parametrize(
    "sqlstate",
    ["22001", "22003", "22P02", "22P05", "22021", "23514", "23502", "23503", "23505", "54000"],
)
def test_data_exceptions_integrity_violations_and_program_limits_are_rejected(
    sqlstate: str,
) -> None:
    failure = classify(errors.lookup(sqlstate)("that row"))
    assert failure.verdict is Verdict.REJECT
    assert not failure.retriable


def test_a_program_limit_is_rejected_although_psycopg_calls_it_an_operational_error() -> None:
    exc = errors.ProgramLimitExceeded("index row size 2720 exceeds btree version 4 maximum 2704")
    assert isinstance(exc, psycopg.OperationalError)
    assert classify(exc).verdict is Verdict.REJECT


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.InterfaceError("the connection is closed"),
        TransientError("cannot connect to PostgreSQL: refused"),
        errors.UndefinedTable('relation "market_data_ticks" does not exist'),
        errors.InsufficientPrivilege("permission denied for table market_data_ticks"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        RuntimeError("a bug"),
    ],
)
def test_failures_that_are_not_the_rows_fault_are_retried(exc: BaseException) -> None:
    assert classify(exc).verdict is Verdict.RETRY


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.DataError("decimal too precise for PostgreSQL numeric binary format"),
        psycopg.ProgrammingError("cannot dump lists of mixed types"),
        UnicodeEncodeError("utf-8", "a\ud800", 1, 2, "surrogates not allowed"),
        ValueError("bad value"),
        TypeError("can't dump"),
        OverflowError("int too big to convert"),
        InvalidRecord("price", "too many digits"),
    ],
)
def test_what_the_client_cannot_dump_is_rejected(exc: BaseException) -> None:
    assert classify(exc).verdict is Verdict.REJECT


def test_the_reason_is_the_first_line_of_the_message_with_its_sqlstate() -> None:
    exc = errors.StringDataRightTruncation(
        "value too long for type character varying(10)\nCONTEXT:  COPY t, line 1"
    )
    assert describe(exc) == "[22001] value too long for type character varying(10)"
    assert classify(exc).reason == describe(exc)
    dumped = psycopg.DataError("decimal too precise for PostgreSQL numeric binary format")
    assert describe(dumped) == "decimal too precise for PostgreSQL numeric binary format"
    assert describe(ValueError("")) == "ValueError"
    assert describe(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")) == (
        "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0:"
        " surrogates not allowed"
    )
