"""The live status of `mdp run`: one line per role, from the role's own ``/metrics`` and the
consumer groups' lag in Kafka."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from marketdata.backoff import wait_or_stop
from marketdata.errors import MarketDataError
from marketdata.kafka import admin_client, topic_partitions
from marketdata.settings import Settings
from mdp.supervisor import Child, Supervisor

Figures = dict[str, float]


def parse_metrics(text: str) -> Figures:
    """Prometheus text → sums by sample name, and by ``name:first-label-value``."""
    figures: Figures = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            figures[sample.name] += sample.value
            if sample.labels:
                figures[f"{sample.name}:{next(iter(sample.labels.values()))}"] += sample.value
    return figures


def _fetch(url: str) -> Figures | None:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own http URL
            return parse_metrics(response.read().decode())
    except (OSError, ValueError):
        return None


def _n(value: float) -> str:
    return f"{int(value):,}"


def _producer(f: Figures, _: int | None) -> str:
    return (f"published {_n(f['mdp_producer_records_total'])} records, "
            f"{_n(f['mdp_producer_dead_letters_total'])} dead letters")  # fmt: skip


def _processor(f: Figures, lag: int | None) -> str:
    return (f"in {_n(f['mdp_process_messages_in_total'])} msgs / "
            f"{_n(f['mdp_process_records_in_total'])} records, out "
            f"{_n(f['mdp_process_records_out_total'])} records in "
            f"{_n(f['mdp_process_batches_out_total'])} batches, "
            f"{_n(f['mdp_process_duplicates_dropped_total'])} duplicates dropped"
            + ("" if lag is None else f", lag {_n(lag)}"))  # fmt: skip


def _sink(f: Figures, lag: int | None) -> str:
    return (f"rows written {_n(f['mdp_sink_rows_written_total:market_data_ticks'])} ticks, "
            f"{_n(f['mdp_sink_rows_written_total:market_data_ohlcv'])} bars; "
            f"{_n(f['mdp_sink_dead_letters_total'])} dead letters"
            + ("" if lag is None else f", lag {_n(lag)}"))  # fmt: skip


def _webhook(f: Figures, _: int | None) -> str:
    accepted = f["mdp_webhook_requests_total:202"]
    return f"alerts {_n(accepted)} accepted, {_n(f['mdp_webhook_requests_total'] - accepted)} other"


def _rollup(f: Figures, _: int | None) -> str:
    if f["mdp_rollup_idle"]:
        return "TimescaleDB: continuous aggregates, kept by their policies (idle)"
    last = f["mdp_rollup_last_run_timestamp_seconds"]
    ago = f"last {_n(max(0.0, time.time() - last))} s ago" if last else "not run yet"
    text = (f"every {_n(f['mdp_rollup_every_seconds'])} s, {_n(f['mdp_rollup_runs_total'])} runs,"
            f" {_n(f['mdp_rollup_rows_written_total'])} rows written, {ago}")  # fmt: skip
    failures = _n(f["mdp_rollup_failures_total"])
    if f["mdp_rollup_failing"]:
        return f"{text}; FAILING, retrying ({failures} failures; see its log)"
    return f"{text}; {failures} failures" if f["mdp_rollup_failures_total"] else text


FORMATS: dict[str, Callable[[Figures, int | None], str]] = {
    "binance": _producer, "ibkr": _producer, "dtc": _producer, "process": _processor,
    "sink": _sink, "webhook": _webhook, "rollup": _rollup,
}  # fmt: skip


async def group_lag(settings: Settings, group: str, topics: list[str]) -> int | None:
    """Messages in ``topics`` not yet committed by ``group``; None when Kafka does not say."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        partitions = await topic_partitions(settings, topics)
        await consumer.start()
        ends = await consumer.end_offsets(partitions)
        async with admin_client(settings) as admin:
            committed = await admin.list_consumer_group_offsets(group)
        lag: int = sum(max(0, end - (committed[tp].offset if tp in committed else 0))
                       for tp, end in ends.items())  # fmt: skip
        return lag
    except (MarketDataError, KafkaError, OSError):
        return None
    finally:
        await consumer.stop()


class Board:
    """Polls every role and renders the lines; on a terminal, redrawn in place."""

    def __init__(self, supervisor: Supervisor, settings: Settings, title: str) -> None:
        self.supervisor = supervisor
        self.settings = settings
        self.title = title
        self.started = time.monotonic()
        self.figures: dict[str, Figures] = {}
        self.lags: dict[str, int | None] = {"process": None, "sink": None}
        self._drawn = 0

    async def poll(self) -> None:
        urls = {c.spec.name: c.spec.metrics_url for c in self.supervisor.children
                if c.spec.metrics_url}  # fmt: skip
        results = await asyncio.gather(*(asyncio.to_thread(_fetch, u) for u in urls.values()))
        for name, figures in zip(urls, results, strict=True):
            if figures is not None:
                self.figures[name] = figures

    async def poll_lag(self) -> None:
        topics = self.settings.topics
        self.lags["process"] = await group_lag(
            self.settings, self.settings.process_group, [topics.ticks_raw, topics.bars_raw]
        )
        self.lags["sink"] = await group_lag(
            self.settings, self.settings.sink_group, [topics.ticks, topics.bars]
        )

    def lines(self) -> list[str]:
        elapsed = int(time.monotonic() - self.started)
        lines = [f"{self.title}  {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
                 f"  logs in {self.supervisor.log_dir}  (Ctrl-C stops)"]  # fmt: skip
        for child in self.supervisor.children:
            lines.append(self._line(child))
        return lines

    def _line(self, child: Child) -> str:
        name = child.spec.name
        pid = child.process.pid if child.process and child.process.returncode is None else "-"
        state = child.state if child.state != "failed" else f"failed (exit {child.exit_code})"
        restarts = f" restarts {child.restarts}" if child.restarts else ""
        detail = ""
        if name in FORMATS and name in self.figures:
            detail = FORMATS[name](defaultdict(float, self.figures[name]), self.lags.get(name))
        elif name.startswith("fake-"):
            detail = "sandbox venue"
        return f"  {name:<13} {state:<10} pid {pid!s:<7}{restarts}  {detail}".rstrip()

    def draw(self, tty: bool) -> str:
        """The text to write: on a terminal it first moves up over the previous drawing."""
        lines = self.lines()
        if not tty:
            return "\n".join(lines) + "\n"
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._drawn = len(lines)
        return up + "".join(f"\x1b[2K{line}\n" for line in lines)


async def run_board(
    board: Board, stop: asyncio.Event, tty: bool, write: Callable[[str], object]
) -> None:
    """Redraw every second on a terminal, print every 10 s otherwise, until ``stop``."""
    every, last_lag, last_print = (1.0 if tty else 10.0), 0.0, 0.0
    while not stop.is_set():
        await board.poll()
        if time.monotonic() - last_lag > 3:
            last_lag = time.monotonic()
            await board.poll_lag()
        if time.monotonic() - last_print >= every:
            last_print = time.monotonic()
            write(board.draw(tty))
        await wait_or_stop(stop, 1.0)
