"""`mdp run`: the whole pipeline on this machine, every role its own process.

In sandbox mode (``PROVIDERS_SANDBOX_MODE=sandbox``) the three venues are the protocol-level
venues of the installed ``sandbox`` package on their sandbox ports, replaying recorded or
generated market data; in official mode a producer runs only for a venue whose ``*_SYMBOLS``
variable is set. The ``rollup`` role (`mdp rollup --every`) runs whatever the database: on plain
PostgreSQL it keeps the rollup tables current, on TimescaleDB it idles and says so, since the
continuous aggregates' policies do that there (the plan is made before the database is reached,
and one behaviour is the same under compose).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Final

from marketdata.errors import ConfigError
from marketdata.inventory import Series, stored_series
from marketdata.kafka import ensure_topics
from marketdata.settings import BINANCE_FAKE, DTC_FAKE_PORTS, IBKR_FAKE_PORT, Settings
from marketdata.signals import stop_on_signals
from mdp.board import Board, run_board
from mdp.services.manager import ServiceManager
from mdp.supervisor import RoleSpec, Supervisor

log = logging.getLogger(__name__)

ROLES: Final = ("binance", "ibkr", "dtc", "process", "sink", "webhook", "rollup")
SANDBOX_SYMBOLS: Final = {
    "binance": "BTCUSDT,ETHUSDT",
    "ibkr": "STK:AAPL:SMART:USD,FUT:ES:CME:USD:202412",
    "dtc": "ESZ4@CME,NQZ4@CME",
}
PRODUCER_METRICS_PORTS: Final = {"binance": 9471, "ibkr": 9472, "dtc": 9473}
ROLLUP_METRICS_PORT: Final = 9474
ROLLUP_EVERY_S: Final = 60


def _mdp(*args: str) -> tuple[str, ...]:
    return ("-m", "mdp", *args)


def plan(settings: Settings, roles: Sequence[str]) -> list[RoleSpec]:
    """The child processes of a run of ``roles``, in start order (venues first)."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown roles {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    sandbox = settings.providers_sandbox_mode == "sandbox"
    host = settings.metrics_host
    specs: list[RoleSpec] = []
    if sandbox:
        specs += _fakes([r for r in roles if r in SANDBOX_SYMBOLS])
    for venue in (r for r in roles if r in SANDBOX_SYMBOLS):
        symbols = getattr(settings, f"{venue}_symbols") or (SANDBOX_SYMBOLS[venue] if sandbox
                                                            else None)  # fmt: skip
        if symbols is None:
            log.info("%s: %s_SYMBOLS is not set; not started", venue, venue.upper())
            continue
        port = PRODUCER_METRICS_PORTS[venue]
        specs.append(RoleSpec(venue, _mdp("produce", venue, "--symbols", symbols),
                              {"MDP_PRODUCER_METRICS_PORT": str(port)},
                              f"http://{host}:{port}/metrics"))  # fmt: skip
    if "process" in roles:
        specs.append(RoleSpec("process", _mdp("process"), {},
                              f"http://{host}:{settings.process_web_port}/metrics",
                              stop_order=1))  # fmt: skip
    if "webhook" in roles and (env := _webhook_env(settings)) is not None:
        url = f"http://{settings.webhook_host}:{settings.webhook_port}/metrics"
        specs.append(RoleSpec("webhook", _mdp("webhook"), env, url))
    if "sink" in roles:
        url = f"http://{host}:{settings.metrics_port}/metrics"
        specs.append(RoleSpec("sink", _mdp("sink"), {}, url, stop_order=2))
    if "rollup" in roles:
        port = ROLLUP_METRICS_PORT
        specs.append(RoleSpec("rollup", _mdp("rollup", "--every", str(ROLLUP_EVERY_S),
                                             "--metrics-port", str(port)),
                              {}, f"http://{host}:{port}/metrics"))  # fmt: skip
    return specs


def _fakes(venues: list[str]) -> list[RoleSpec]:
    binance_port = int(BINANCE_FAKE[0].rsplit(":", 1)[1])
    live, history = DTC_FAKE_PORTS
    fakes = {
        "binance": RoleSpec("fake-binance", ("-m", "sandbox.binance", "--port",
                            str(binance_port)), {}, ready_port=binance_port, stop_order=3),
        "ibkr": RoleSpec("fake-tws", ("-m", "sandbox.tws", "--port", str(IBKR_FAKE_PORT)),
                         {}, ready_port=IBKR_FAKE_PORT, stop_order=3),
        "dtc": RoleSpec("fake-dtc", ("-m", "sandbox.dtc", "--port", str(live),
                        "--historical-port", str(history)), {}, ready_port=live, stop_order=3),
    }  # fmt: skip
    return [fakes[venue] for venue in venues]


def _webhook_env(settings: Settings) -> dict[str, str] | None:
    """The webhook needs TRADINGVIEW_HMAC_SECRET; a sandbox run makes one, kept in the state
    directory (mode 0600) for `mdp webhook sign`, never printed."""
    if settings.tradingview_hmac_secret is not None or "signature" not in settings.webhook_auth:
        return {}
    if settings.providers_sandbox_mode != "sandbox":
        log.warning("webhook: TRADINGVIEW_HMAC_SECRET is not set; not started")
        return None
    path = settings.state_dir / "webhook-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    log.info("webhook: sandbox secret in %s (TRADINGVIEW_HMAC_SECRET=$(cat %s))", path, path)
    return {"TRADINGVIEW_HMAC_SECRET": path.read_text().strip()}


async def run_pipeline(
    settings: Settings, roles: Sequence[str], *, duration_s: float | None = None,
    services: bool = True, write: Callable[[str], object] = sys.stdout.write,
) -> list[Series]:  # fmt: skip
    """Start services and roles, show their status until stopped (signal or ``duration_s``),
    stop them in order, and return what the database holds."""
    # Imported here: Alembic and SQLAlchemy would cost every `mdp` command 0.3 s.
    from marketdata import migrate  # noqa: PLC0415

    specs = plan(settings, roles)
    stop = stop_on_signals()  # from here on, Ctrl-C ends the run cleanly, even while it starts
    if services:
        await asyncio.to_thread(ServiceManager(settings).up)
    await ensure_topics(settings, settings.topics.all())
    await asyncio.to_thread(migrate.upgrade, settings)
    supervisor = Supervisor(specs, settings.state_dir / "logs", settings.to_env())
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, stop.set)
    title = f"mdp run ({settings.providers_sandbox_mode})"
    board = Board(supervisor, settings, title)
    tty = sys.stdout.isatty()
    try:
        await supervisor.start(stop)
        await asyncio.gather(supervisor.watch(stop), run_board(board, stop, tty=tty, write=write))
    finally:
        write("stopping…\n")
        # The roles' own figures, read while they still serve them: once stopped they cannot
        # say, and the board would show what the last periodic poll saw (zeros, early on).
        await board.poll()
        await supervisor.aclose()
    write(board.draw(tty=False))
    return await stored_series(settings)
