"""Poison past the door: signed and passphrase-carrying alerts over HTTP, in every auth mode,
reach the parser and the mapping and get 2xx or a 4xx with a reason, never 500; a spool that
cannot take an alert answers 503 and /health says why; no secret ever reaches the logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from marketdata.errors import ConfigError
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import free_port, read_ticks
from tests.integration.webhook.serving import serving as serving_app
from tests.integration.webhook.test_webhook import PASSPHRASE, SECRET, alert, post, signed
from tests.unit.webhook.alert_mutations import alert_bodies
from webhook.app import create_app

DOCUMENTED = {200, 202, 400, 401, 413, 422}


@contextlib.asynccontextmanager
async def serving(settings: Settings, tmp_path: Path, **env: str) -> AsyncIterator[str]:
    configured = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "TRADINGVIEW_HMAC_SECRET": SECRET,
        "TRADINGVIEW_PASSPHRASE": PASSPHRASE,
        "MDP_WEBHOOK_SPOOL_DIR": str(tmp_path / "spool"),
        "MDP_WEBHOOK_PUBLISH_TIMEOUT_S": "0.5",
        **env,
    })  # fmt: skip
    async with serving_app(configured) as url:
        yield url


async def health(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
        return response.status, await response.text()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


# The issue's rows, each in every mode: (alert changes, status, the reason's start).
ROWS: list[tuple[dict[str, object], int, str | None]] = [
    ({"levels": "DEEP"}, 400, "JSON nested deeper than 16 levels"),
    ({"time": 10**15}, 202, None),  # epoch microseconds: 2001-09-09T01:46:40Z
    ({"time": 1e15}, 202, None),
    ({"price": "1." + "0" * 20_000}, 422, "price: more than 38 significant digits"),
    ({"id": "x" * 3_000}, 422, "id: longer than 256 characters"),
    ({"ticker": "X" * 3_000}, 422, "ticker: longer than 128 characters"),
]


@pytest.mark.parametrize(
    ("auth", "signs", "knows_passphrase"),
    [
        ("signature", True, False),
        ("passphrase", False, True),
        ("signature,passphrase", True, True),
        ("passphrase", False, False),  # anyone: the body is parsed to find the passphrase
    ],
)
async def test_the_issue_rows_in_every_auth_mode(
    settings: Settings, tmp_path: Path, auth: str, signs: bool, knows_passphrase: bool
) -> None:
    await ensure_topics(settings, settings.topics.all())
    authenticated = knows_passphrase or "passphrase" not in auth
    async with serving(settings, tmp_path, MDP_WEBHOOK_AUTH=auth) as url:
        for n, (changes, row_status, row_reason) in enumerate(ROWS):
            body = alert(n, **changes)
            if not knows_passphrase:
                body = body.replace(f'"passphrase": "{PASSPHRASE}"'.encode(), b'"passphrase": ""')
            body = body.replace(b'"DEEP"', _deep(3_000))
            got, text = await post(url, body, signed(body) if signs else {})
            status, reason = row_status, row_reason
            if not authenticated and status != 400:
                status, reason = 401, "bad passphrase"  # everything else waits for the passphrase
            assert got == status, text
            answer = json.loads(text)
            if reason is not None:
                assert answer["error"].startswith(reason), answer
            else:
                assert answer["status"] == "accepted", answer
    ticks = await read_ticks(settings, settings.topics.ticks_raw, idle_s=1)
    expected = [datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)] * 2 if authenticated else []
    assert [t.timestamp for t in ticks] == expected


@pytest.mark.parametrize(
    ("auth", "passphrase"),
    [("signature,passphrase", PASSPHRASE), ("signature", None), ("passphrase", PASSPHRASE)],
)
async def test_fuzzed_authenticated_alerts_never_500_and_never_log_a_secret(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture, auth: str,
    passphrase: str | None,
) -> None:  # fmt: skip
    await ensure_topics(settings, settings.topics.all())
    statuses: list[int] = []
    caplog.set_level(logging.DEBUG)
    async with serving(settings, tmp_path, MDP_WEBHOOK_AUTH=auth) as url:
        loop = asyncio.get_running_loop()

        @hypothesis_settings(max_examples=60, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(alert_bodies(passphrase))
        def fuzz(body: bytes) -> None:
            request = post(url, body, signed(body) if "signature" in auth else {})
            status, text = asyncio.run_coroutine_threadsafe(request, loop).result(30)
            statuses.append(status)
            assert status in DOCUMENTED, (status, text)
            if status >= 400:
                assert json.loads(text)["error"], text

        await asyncio.to_thread(fuzz)
    assert {202, 422} <= set(statuses)  # the mutations reach the mapping, both ways
    assert SECRET not in caplog.text
    assert PASSPHRASE not in caplog.text
    for tick in await read_ticks(settings, settings.topics.ticks_raw, idle_s=1):
        assert not tick.extras or "passphrase" not in tick.extras


async def test_a_full_spool_is_503_and_health_says_so(settings: Settings, tmp_path: Path) -> None:
    away = f"127.0.0.1:{free_port()}"  # Kafka away: every alert goes to the spool
    env = {"KAFKA_BOOTSTRAP_SERVERS": away, "MDP_WEBHOOK_SPOOL_MAX_BYTES": "1024"}
    async with serving(settings, tmp_path, MDP_WEBHOOK_AUTH="signature", **env) as url:
        assert await health(url) == (200, "ready: spooling (0 alerts waiting for kafka)\n")
        answers = []
        for n in range(6):
            body = alert(n)
            answers.append(await post(url, body, signed(body)))
            if answers[-1][0] == 503:
                break
        assert [s for s, _ in answers[:-1]] == [202] * (len(answers) - 1)
        assert answers[-1] == (503, '{"error":"not stored; retry"}'), answers
        status, text = await health(url)
    assert (status, text) == (
        503, "not ready: kafka away and spool full (MDP_WEBHOOK_SPOOL_MAX_BYTES=1024)\n"
    )  # fmt: skip


async def test_an_unwritable_spool_is_503_and_health_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "not-a-directory").write_text("")
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "MDP_WEBHOOK_SPOOL_DIR": str(tmp_path / "not-a-directory" / "spool")}  # fmt: skip
    async with serving(settings, tmp_path, MDP_WEBHOOK_AUTH="signature", **env) as url:
        body = alert(1)
        assert await post(url, body, signed(body)) == (503, '{"error":"not stored; retry"}')
        status, text = await health(url)
    assert status == 503
    assert text.startswith("not ready: kafka away and spool not writable ("), text
    assert "Not a directory" in text


async def test_no_secret_or_passphrase_reaches_the_logs(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every path that logs: refusals, a publish, the spool, a broker away, a bad config."""
    await ensure_topics(settings, settings.topics.all())
    caplog.set_level(logging.DEBUG)
    for auth in ("signature,passphrase", "passphrase"):
        async with serving(settings, tmp_path, MDP_WEBHOOK_AUTH=auth) as url:
            good, wrong = alert(1), alert(2, passphrase=PASSPHRASE + "!")
            for body, headers in [
                (good, signed(good)),
                (good, {"X-Signature": "sha256=" + "0" * 64}),
                (wrong, signed(wrong)),
                (alert(3, price=PASSPHRASE), signed(alert(3, price=PASSPHRASE))),
                (b"{" + PASSPHRASE.encode(), signed(b"{" + PASSPHRASE.encode())),
            ]:
                status, text = await post(url, body, headers)
                assert status < 500, text
                assert SECRET not in text
    away = f"127.0.0.1:{free_port()}"
    async with serving(settings, tmp_path, KAFKA_BOOTSTRAP_SERVERS=away,
                       MDP_WEBHOOK_AUTH="signature,passphrase") as url:  # fmt: skip
        body = alert(4)
        assert (await post(url, body, signed(body)))[0] == 202  # spooled
    for env in ({"TRADINGVIEW_HMAC_SECRET": SECRET[:8]},
                {"MDP_WEBHOOK_AUTH": "passphrase", "TRADINGVIEW_PASSPHRASE": ""}):  # fmt: skip
        with contextlib.suppress(ConfigError):
            create_app(Settings.from_env(env))
    assert "spool" in caplog.text  # the run did log
    assert SECRET not in caplog.text
    assert SECRET[:8] not in caplog.text
    assert PASSPHRASE not in caplog.text
