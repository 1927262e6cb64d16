"""The TradingView webhook: verified alerts to ticks on ``md.ticks.raw``.

``POST /webhooks/tradingview`` answers 202 only once Kafka has acknowledged the tick (within
``MDP_WEBHOOK_PUBLISH_TIMEOUT_S``, inside TradingView's 3-second budget), else 503: an accepted
alert is never one that could be lost. The same authenticated body again within
``MDP_WEBHOOK_REPLAY_S`` is acknowledged (200) and not published twice. The Kafka producer and
the replay window live in the app's lifespan state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from marketdata.codec import encode_ticks
from marketdata.errors import ConfigError
from marketdata.kafka import create_producer
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from marketdata.window import SeenWindow
from webhook.alert import alert_to_tick, parse_body
from webhook.auth import (
    Networks,
    Rejected,
    check_source,
    parse_networks,
    source_address,
    take_passphrase,
    verify_signature,
)
from webhook.delivery import Delivery
from webhook.mapping import FieldMap
from webhook.spool import Spool, SpoolUnavailable

log = logging.getLogger(__name__)
MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class Checks:
    """What a request must pass, built once from the settings (secrets as bytes, never logged)."""

    secret: bytes | None
    passphrase: bytes | None
    networks: Networks | None
    proxy_header: str | None
    max_body: int
    read_timeout_s: float
    fields: FieldMap

    @classmethod
    def from_settings(cls, settings: Settings) -> Checks:
        modes = set(settings.webhook_auth.split(","))
        secret = passphrase = None
        if "signature" in modes:
            if settings.tradingview_hmac_secret is None:
                raise ConfigError("TRADINGVIEW_HMAC_SECRET: required by MDP_WEBHOOK_AUTH=signature")
            secret = settings.tradingview_hmac_secret.get_secret_value().encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(f"TRADINGVIEW_HMAC_SECRET: at least {MIN_SECRET_BYTES} bytes")
        if "passphrase" in modes:
            if settings.tradingview_passphrase is None:
                raise ConfigError("TRADINGVIEW_PASSPHRASE: required by MDP_WEBHOOK_AUTH=passphrase")
            passphrase = settings.tradingview_passphrase.get_secret_value().encode()
        try:
            networks = parse_networks(settings.webhook_allow) if "allowlist" in modes else None
        except ValueError as exc:
            raise ConfigError(f"MDP_WEBHOOK_ALLOW: {exc}") from None
        fields = FieldMap.from_setting(settings.webhook_fields, settings.webhook_default_exchange)
        return cls(secret, passphrase, networks, settings.webhook_proxy_header,
                   settings.webhook_max_body, settings.webhook_read_timeout_s, fields)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("mdp_webhook_requests", "Alerts by HTTP status", ["status"],
                                registry=registry)  # fmt: skip
        self.publish_seconds = Histogram(
            "mdp_webhook_publish_seconds", "From the request to Kafka's acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )  # fmt: skip
        self.replays = Counter("mdp_webhook_replays", "Alerts taken again within the replay window",
                               registry=registry)  # fmt: skip
        self.spool_depth = Gauge("mdp_webhook_spool_depth", "Alerts in the spool, not yet in Kafka",
                                 registry=registry)  # fmt: skip


class AlertIntake:
    """``POST /webhooks/tradingview``: authenticate, parse, deduplicate, publish, answer."""

    def __init__(self, checks: Checks, metrics: Metrics) -> None:
        self.checks = checks
        self.metrics = metrics

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._take(request, started)
        except Rejected as exc:
            # The rest of a body that was not read would be taken for the next request.
            close = {"connection": "close"} if exc.status in {408, 413} else None
            response = JSONResponse({"error": exc.reason}, status_code=exc.status, headers=close)
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _take(self, request: Request, started: float) -> Response:
        if self.checks.networks is not None:
            peer = request.client.host if request.client else None
            proxy = self.checks.proxy_header
            address = source_address(peer, request.headers.getlist(proxy) if proxy else None)
            check_source(address, self.checks.networks)
        body = await _read_body(request, self.checks.max_body, self.checks.read_timeout_s)
        if self.checks.secret is not None:
            verify_signature(body, request.headers.get("x-signature"), self.checks.secret)
        alert = parse_body(body)  # JSON whatever the content type: TradingView sends text/plain
        if self.checks.passphrase is not None:
            take_passphrase(alert, self.checks.passphrase)
        tick = alert_to_tick(alert, body, datetime.now(UTC), self.checks.fields)
        digest = int.from_bytes(hashlib.sha256(body).digest()[:16], "big")
        replays: SeenWindow = request.app.state.replays
        if replays.seen_before(digest):
            self.metrics.replays.inc()
            return JSONResponse({"status": "duplicate", "trade_id": tick.trade_id}, status_code=200)
        delivery: Delivery = request.app.state.delivery
        key = instrument_key(tick.exchange, tick.symbol)
        try:
            outcome = await delivery.publish(key, encode_ticks([tick]))
        except SpoolUnavailable as exc:
            replays.forget(digest)  # not taken: TradingView's next delivery must get through
            log.error("alert not stored: %s", exc)
            raise Rejected(503, "not stored; retry") from None
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        self.metrics.spool_depth.set(delivery.spool.depth)
        return JSONResponse({"status": outcome, "trade_id": tick.trade_id}, status_code=202)


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length", "")
    # isdigit() alone takes "²"; thousands of digits are more than int() reads from text.
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise Rejected(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    try:
        # A client that stalls in the middle of its body must not hold this task for ever.
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Rejected(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(408, f"body not received within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise Rejected(400, "the client went away before the end of its body") from None
    return b"".join(chunks)


def webhook_producer(settings: Settings) -> AIOKafkaProducer:
    # Each request waits for its acknowledgement, so lingering only adds latency: 1 ms is enough
    # to batch the concurrent requests of a burst. The producer gives up on a send (metadata
    # wait, then the request) well within the publish deadline, so the alert is spooled in time.
    # A broker that wrote it but did not answer in time gets it again from the spool: at least
    # once, with the same id (README, tests/integration/webhook/test_delivery.py).
    timeout_ms = int(settings.webhook_publish_timeout_s * 1000 / 2)
    return create_producer(settings, linger_ms=1, request_timeout_ms=timeout_ms)


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    producer_factory: Callable[[Settings], AIOKafkaProducer] = webhook_producer,
) -> Starlette:
    checks = Checks.from_settings(settings)  # refuses to build without a usable secret
    metrics = Metrics(registry or CollectorRegistry())

    spool_dir = settings.webhook_spool_dir or settings.state_dir / "webhook-spool"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        delivery = Delivery(
            settings, Spool(spool_dir, settings.webhook_spool_max_bytes), producer_factory
        )
        await delivery.start()
        app.state.delivery = delivery
        app.state.replays = SeenWindow(max_keys=100_000, max_age_s=settings.webhook_replay_s)
        try:
            yield
        finally:
            await delivery.aclose()

    intake = AlertIntake(checks, metrics)

    async def health(request: Request) -> Response:
        delivery: Delivery | None = getattr(request.app.state, "delivery", None)
        if delivery is None:
            return PlainTextResponse("not ready: starting\n", status_code=503)
        problem = delivery.spool.problem()
        if delivery.connected and not delivery.spool.depth:
            note = f" (spool {problem})" if problem else ""
            return PlainTextResponse(f"ready: kafka connected{note}\n")
        if problem is None:
            depth = delivery.spool.depth
            return PlainTextResponse(f"ready: spooling ({depth} alerts waiting for kafka)\n")
        return PlainTextResponse(f"not ready: kafka away and spool {problem}\n", status_code=503)

    async def serve_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/webhooks/tradingview", intake.handle, methods=["POST"]),
            Route("/health", health),
            Route("/metrics", serve_metrics),
        ],
        lifespan=lifespan,
    )
