"""tools/pglite/server.mjs as PostgreSQL clients meet it: one session at a time on PGlite's one
backend, each starting clean however the previous one ended (mid-transaction, mid-COPY), COPY
FROM STDIN in text and binary, with and without a column list."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from tests.timescale.conftest import Server

pytestmark = pytest.mark.timescale


def _cut(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop the connection as a crashed client would: no Terminate, no rollback."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def table(pglite: Server) -> Iterator[str]:
    with psycopg.connect(pglite.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE server_probe (n int PRIMARY KEY, v numeric, t text)")
    yield "server_probe"
    with psycopg.connect(pglite.url, autocommit=True) as conn:
        conn.execute("DROP TABLE server_probe")


def test_a_session_cut_mid_transaction_is_rolled_back_and_the_next_starts_clean(
    pglite: Server, table: str
) -> None:
    conn = psycopg.connect(pglite.url, prepare_threshold=0)  # every query a named statement
    conn.execute("INSERT INTO server_probe VALUES (1, 1.5, 'lost')")
    conn.execute("CREATE TEMP TABLE scratch (n int)")
    conn.execute("SET search_path TO pg_catalog")
    _cut(conn)
    conn.close()
    with psycopg.connect(pglite.url, prepare_threshold=0) as fresh:
        assert fresh.execute("SELECT count(*) FROM server_probe").fetchone() == (0,)
        assert fresh.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
        assert fresh.execute("SHOW search_path").fetchone() == ("public",)
        # The same statement names as the cut session's: they were deallocated.
        assert fresh.execute("SELECT %s::int", [7]).fetchone() == (7,)


def test_copy_from_stdin_text_binary_and_a_copy_cut_halfway(pglite: Server, table: str) -> None:
    with psycopg.connect(pglite.url) as conn:
        with conn.cursor().copy("COPY server_probe (n, v, t) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "numeric", "text"])
            for n in range(2000):
                copy.write_row((n, Decimal(n) / 8, f"row {n}"))
        with conn.cursor().copy("COPY server_probe FROM STDIN") as copy:  # no column list
            copy.write_row((5000, Decimal("0.5"), "text"))
        conn.commit()
        conn.execute("SAVEPOINT s")
        with (
            pytest.raises(psycopg.errors.UniqueViolation),
            conn.cursor().copy("COPY server_probe (n) FROM STDIN") as copy,
        ):
            copy.write_row((1,))
        conn.execute("ROLLBACK TO SAVEPOINT s")
        assert conn.execute(
            "SELECT count(*), sum(v), max(t) FROM server_probe WHERE n < 2000"
        ).fetchone() == (2000, Decimal(1999 * 2000 // 2) / 8, "row 999")
    cut = psycopg.connect(pglite.url)
    copy_cm = cut.cursor().copy("COPY server_probe (n) FROM STDIN")
    copy = copy_cm.__enter__()
    copy.write_row((9999,))
    _cut(cut)
    cut.close()
    with psycopg.connect(pglite.url) as conn:
        assert conn.execute("SELECT count(*) FROM server_probe").fetchone() == (2001,)


def test_a_second_client_waits_until_the_first_leaves(pglite: Server, table: str) -> None:
    first = psycopg.connect(pglite.url, autocommit=True)
    connected = threading.Event()

    def second() -> None:
        with psycopg.connect(pglite.url, autocommit=True) as conn:
            conn.execute("SELECT 1")
            connected.set()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(1.0)
    assert not connected.is_set()
    first.close()
    assert connected.wait(30)
    thread.join(30)
