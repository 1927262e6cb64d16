"""Mutated real-shaped alerts through the parser, the passphrase check and the mapping, as the
app runs them after the signature: each gives a tick the codec carries, or a 4xx with a reason."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings

from marketdata.codec import decode, encode_ticks
from marketdata.records import Tick
from tests.unit.webhook.alert_mutations import ALERTS, alert_bodies, serialise
from webhook.alert import alert_to_tick, parse_body
from webhook.auth import Rejected, take_passphrase

NOW = datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)
PASSPHRASE = "correct horse battery staple"


def take(body: bytes, passphrase: str | None) -> Tick | Rejected:
    """What AlertIntake does with a body once its signature (if any) has passed."""
    try:
        alert = parse_body(body)
        if passphrase is not None:
            take_passphrase(alert, passphrase.encode())
        tick = alert_to_tick(alert, body, NOW)
    except Rejected as rejected:
        return rejected
    return tick


def _documented(outcome: Tick | Rejected, passphrase: str | None) -> None:
    if isinstance(outcome, Rejected):
        assert outcome.status in {400, 401, 422}, outcome.reason
        assert outcome.reason.strip()
        if passphrase is not None:
            assert passphrase not in outcome.reason
        return
    (carried,) = decode(encode_ticks([outcome])).records  # what goes to md.ticks.raw
    assert carried == outcome
    assert outcome.extras is None or "passphrase" not in outcome.extras


def test_every_fixture_alert_is_a_tick_but_the_volume_nan_one() -> None:
    outcomes = [take(serialise(alert), None) for alert in ALERTS]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert [(r.status, r.reason.split(":")[0]) for r in rejected] == [(422, "volume")]
    assert all(
        isinstance(o, Tick) and o.source == "TradingView" for o in outcomes if o not in rejected
    )


@settings(max_examples=1500, deadline=None)
@given(alert_bodies())
def test_mutated_signed_alerts_give_only_documented_outcomes(body: bytes) -> None:
    _documented(take(body, None), None)


@settings(max_examples=1500, deadline=None)
@given(alert_bodies(PASSPHRASE))
def test_mutated_alerts_with_a_passphrase_give_only_documented_outcomes(body: bytes) -> None:
    outcome = take(body, PASSPHRASE)
    _documented(outcome, PASSPHRASE)
    if isinstance(outcome, Tick):
        assert PASSPHRASE not in encode_ticks([outcome]).decode()
