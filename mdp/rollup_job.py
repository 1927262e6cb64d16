"""`mdp rollup`: plain PostgreSQL's rollups of 1m bars brought up to date (marketdata/rollups),
once or every N seconds as a role of its own (`mdp run`, compose).

Each round connects, refreshes every rollup and disconnects. With ``every``:

- a database that is away, or not migrated yet, is retried with capped backoff and one WARNING
  line per attempt, never by exiting: under `mdp run` or compose an exit only becomes a restart
  loop that the supervisor ends by giving up;
- on TimescaleDB the continuous aggregates' policies keep the rollups, so the job says so once
  and idles until stopped (exiting would have `mdp run` and compose's ``unless-stopped`` start
  it again and again);
- SIGTERM/SIGINT mid-round cancels the round's query on the server: its transaction rolls back
  and the mark of the last run stays, so the next run redoes the work. The database work runs in
  a daemon thread, so a connect that hangs cannot hold the exit past the supervisor's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import TransientError
from marketdata.metrics import MetricsServer
from marketdata.rollups import plain_rollups, refresh, rollups
from marketdata.settings import Settings

log = logging.getLogger(__name__)

TIMESCALEDB: Final = "TimescaleDB: the rollups are continuous aggregates, kept by policy"
# Both well inside the 5 s a supervisor gives a role between SIGTERM and SIGKILL.
CONNECT_TIMEOUT_S: Final = 5
CANCEL_GRACE_S: Final = 2.0
T = TypeVar("T")


class NotMigrated(Exception):
    """Neither the plain rollup tables nor TimescaleDB: `mdp migrate` has not run (yet)."""


@dataclass
class JobMetrics:
    """What the board of `mdp run` shows, in a registry of the job's own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    failing_now: bool = False
    idle_now: bool = False
    last_run_at: float | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.runs = Counter("mdp_rollup_runs", "Rounds that brought every rollup up to date",
                            registry=r)  # fmt: skip
        self.rows = Counter("mdp_rollup_rows_written", "Rollup rows inserted or updated",
                            ["rollup"], registry=r)  # fmt: skip
        self.failures = Counter("mdp_rollup_failures", "Rounds that failed (retried)", registry=r)
        self.failing = Gauge("mdp_rollup_failing", "1 while the last round failed", registry=r)
        self.idle = Gauge("mdp_rollup_idle", "1 on TimescaleDB: the policies keep the rollups",
                          registry=r)  # fmt: skip
        self.last_run = Gauge("mdp_rollup_last_run_timestamp_seconds",
                              "When the last successful round ended (Unix time)",
                              registry=r)  # fmt: skip
        self.every = Gauge("mdp_rollup_every_seconds", "Seconds between rounds", registry=r)

    def ready(self) -> bool:
        """Health: the last round succeeded (or TimescaleDB keeps the rollups)."""
        return not self.failing_now and (self.idle_now or self.last_run_at is not None)

    def failed(self) -> None:
        self.failures.inc()
        self.failing_now = True
        self.failing.set(1)

    def recovered(self) -> None:
        self.failing_now = False
        self.failing.set(0)

    def went_idle(self) -> None:
        self.idle_now = True
        self.idle.set(1)

    def succeeded(self, written: dict[str, int]) -> None:
        for name, rows in written.items():
            self.rows.labels(name).inc(rows)
        self.runs.inc()
        self.last_run_at = time.time()
        self.last_run.set(self.last_run_at)


class _Round:
    """One round on a connection of its own, cancellable from another thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection[Any] | None = None
        self._cancelled = False
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, int] | None:
        """The rows written per rollup; None on TimescaleDB."""
        with psycopg.connect(self.settings.database, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            with self._lock:
                if self._cancelled:  # while connecting: nothing to cancel on the server yet
                    raise psycopg.errors.QueryCanceled("stopped before the round began")
                self._conn = conn
            try:
                return _refresh_if_plain(conn, self.settings.rollup_intervals)
            finally:
                with self._lock:
                    self._conn = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=CANCEL_GRACE_S)


def _refresh_if_plain(conn: psycopg.Connection[Any], spec: str) -> dict[str, int] | None:
    # By what migration 0002 made, not only by the extension: TimescaleDB installed after the
    # migration leaves the rollups plain tables that only this job keeps.
    plain = plain_rollups(conn)
    if plain is None:
        raise NotMigrated("the rollup tables are not there: `mdp migrate` makes them")
    if not plain:
        return None
    # MDP_ROLLUP_INTERVALS changed since the last `mdp migrate`: say so, not "relation does not
    # exist" (retried like a database away, as the migration may well come next).
    missing = [
        rollup.name for rollup in rollups(spec)
        if conn.execute("SELECT to_regclass(%s)", (rollup.table,)).fetchone() == (None,)
    ]  # fmt: skip
    if missing:
        raise NotMigrated(f"no rollup table of {', '.join(missing)} (MDP_ROLLUP_INTERVALS):"
                          " `mdp migrate` makes it")  # fmt: skip
    return refresh(conn, spec)


def _in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """``work()`` in a thread the process does not wait for at exit (asyncio.to_thread's pool
    is joined by asyncio.run)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def succeed(result: T) -> None:
        if not future.done():  # not abandoned meanwhile
            future.set_result(result)

    def fail(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            settle: Callable[[], object] = functools.partial(fail, exc)
        else:
            settle = functools.partial(succeed, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="rollup-round", daemon=True).start()
    return future


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        return f"cannot reach PostgreSQL: {first}"
    if isinstance(exc, psycopg.Error):
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        return f"PostgreSQL refused the round{state}: {first}"
    return first


async def _one_round(settings: Settings, stop: asyncio.Event) -> tuple[bool, Any]:
    """(stopped, result): the round's outcome, or stopped mid-round (query cancelled)."""
    job = _Round(settings)
    work = _in_daemon_thread(job)
    stopping = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[Any]] = [work, stopping]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if work.done():
        return False, work.result()
    await asyncio.to_thread(job.cancel)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(work), CANCEL_GRACE_S)
    work.cancel()  # an abandoned round's result or error is nobody's
    return True, None


async def run_once(settings: Settings, stop: asyncio.Event) -> str:
    """One round; what it did, as `mdp rollup` prints it. Failures raise TransientError."""
    try:
        stopped, written = await _one_round(settings, stop)
    except (psycopg.Error, NotMigrated) as exc:
        raise TransientError(describe(exc)) from None
    if stopped:
        return "stopped before the rollups were brought up to date"
    if written is None:
        return TIMESCALEDB
    return ", ".join(f"{name}: {rows} rows" for name, rows in written.items())


async def run_every(
    settings: Settings, every: float, stop: asyncio.Event, metrics: JobMetrics,
    metrics_port: int | None = None,
) -> None:  # fmt: skip
    """Rounds every ``every`` seconds until ``stop``; see the module's docstring."""
    metrics.every.set(every)
    server = None
    if metrics_port is not None:
        server = MetricsServer(metrics.registry, metrics.ready, settings.metrics_host,
                               metrics_port)  # fmt: skip
        await server.start()
    try:
        await _rounds(settings, every, stop, metrics)
    finally:
        if server is not None:
            await server.aclose()


async def _rounds(settings: Settings, every: float, stop: asyncio.Event, m: JobMetrics) -> None:
    backoff = Backoff(initial=1.0, maximum=min(every, 60.0))
    log.info("rollups of 1m bars (%s) every %g s", settings.rollup_intervals, every)
    while not stop.is_set():
        try:
            stopped, written = await _one_round(settings, stop)
        except (psycopg.Error, NotMigrated) as exc:
            m.failed()
            delay = backoff.next_delay()
            log.warning("rollup round failed, retrying in %.1f s (attempt %d): %s", delay,
                        backoff.attempts, describe(exc))  # fmt: skip
            await wait_or_stop(stop, delay)
            continue
        if stopped:
            break
        if m.failing_now:
            log.info("rollup: the database answers again")
            m.recovered()
        backoff.reset()
        if written is None:
            m.went_idle()
            log.info("%s; idle until stopped", TIMESCALEDB)
            await stop.wait()
            break
        m.succeeded(written)
        log.info("rollup: %s", ", ".join(f"{name}: {rows} rows" for name, rows in written.items()))
        await wait_or_stop(stop, every)
    log.info("rollup: stopped")
