"""Connecting to TWS / IB Gateway with ib_async, qualifying contracts, and reading IB's codes."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ib_async import IB, Contract, RequestError

from marketdata.errors import MarketDataError, TransientError
from marketdata.settings import Settings
from producers.ibkr.contracts import Spec

log = logging.getLogger(__name__)

# Farm and connection status notes: TWS sends them on every connect; they are not errors.
INFORMATIONAL: Final = frozenset({2104, 2106, 2107, 2108, 2119, 2158})
CONNECTIVITY_LOST: Final = 1100
RESTORED_DATA_LOST: Final = 1101
RESTORED_DATA_KEPT: Final = 1102
# 162 is also "query returned no data", told apart by its text; 366 and 420 are pacing too.
PACING: Final = frozenset({162, 366, 420})
# MIN_SERVER_VER_HMDS_MARKET_DATA_IN_SHARES (IB API server_versions.py): from 175 on, the volumes
# of historical and real-time bars are in shares; an older TWS sends lots (x100 for US stocks),
# which would be stored as shares without any error.
MIN_SERVER_VERSION: Final = 175


async def connect(settings: Settings, client_id: int) -> IB:
    """A connected, synchronised ``IB`` whose request errors raise :class:`RequestError`."""
    ib = IB()
    ib.RaiseRequestErrors = True
    # TWS's farm notes arrive at ib_async's INFO; ours classify them (see ``log_code``).
    logging.getLogger("ib_async").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    address = f"{settings.ibkr_host}:{settings.ibkr_api_port}"
    try:
        await ib.connectAsync(
            settings.ibkr_host, settings.ibkr_api_port, client_id,
            timeout=settings.ibkr_timeout_s, readonly=settings.ibkr_readonly,
        )  # fmt: skip
    except (OSError, TimeoutError, ConnectionError) as exc:
        ib.disconnect()
        raise TransientError(
            f"cannot connect to TWS/IB Gateway at {address} as client {client_id}:"
            f" {type(exc).__name__}: {exc}"
        ) from None
    version = ib.client.serverVersion()
    if version < MIN_SERVER_VERSION:
        ib.disconnect()
        raise MarketDataError(
            f"TWS/IB Gateway at {address} speaks API server version {version}; server version"
            f" {MIN_SERVER_VERSION} or newer is needed (bar volumes in shares, not lots):"
            " upgrade TWS/IB Gateway"
        )
    log.info("connected to TWS/IB Gateway at %s (server version %s, client %d)",
             address, version, client_id)  # fmt: skip
    return ib


async def qualify(ib: IB, specs: list[Spec]) -> tuple[dict[Spec, Contract], dict[Spec, str]]:
    """Qualify each spec on its own, so that one bad contract fails alone: returns the
    qualified contracts and, for the others, why. A lost connection or an unanswered request
    says nothing about a contract: :class:`TransientError`, to be retried on a new session."""

    async def one(spec: Spec) -> Contract:
        contract = spec.contract()
        try:
            qualified = await asyncio.wait_for(ib.qualifyContractsAsync(contract), 30)
        except RequestError as exc:
            raise MarketDataError(f"IB error {exc.code}: {exc.message}") from None
        except TimeoutError:
            raise MarketDataError("no contract details within 30 s", retriable=True) from None
        if not qualified or not isinstance(qualified[0], Contract):
            raise MarketDataError("unknown or ambiguous contract")
        return qualified[0]

    results = await asyncio.gather(*(one(spec) for spec in specs), return_exceptions=True)
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, OSError) or (  # ConnectionError: ib_async's "Socket disconnect"
            isinstance(result, MarketDataError) and result.retriable
        ):
            raise TransientError(
                f"contract qualification interrupted ({spec.text}): {type(result).__name__}:"
                f" {result}"
            )
    good: dict[Spec, Contract] = {}
    bad: dict[Spec, str] = {}
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, Contract):
            good[spec] = result
        elif isinstance(result, MarketDataError):
            bad[spec] = str(result)
            log.error("contract %s: %s; its subscriptions are skipped", spec.text, result)
        else:
            raise result
    return good, bad


def log_code(req_id: int, code: int, message: str) -> None:
    """Log a TWS message at the level it deserves."""
    if code in INFORMATIONAL:
        log.debug("TWS %d: %s", code, message)
    elif 2100 <= code < 2200:
        log.warning("TWS warning %d: %s", code, message)
    else:
        log.error("TWS error %d (request %d): %s", code, req_id, message)
