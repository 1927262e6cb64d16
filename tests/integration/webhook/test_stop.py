"""`mdp webhook` is gone within 5 s of SIGTERM, with code 0 and its port released, also when the
broker stopped answering while alerts were in flight; what Kafka had not taken is in the spool."""

from __future__ import annotations

import subprocess
from pathlib import Path

from marketdata.settings import Settings
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.processors.support import free_port
from tests.integration.roles import role_process
from tests.integration.stopping import stop_in_time
from tests.integration.webhook.test_spool import _alert, _up
from tests.integration.webhook.test_webhook import SECRET, post
from webhook.spool import Spool


async def test_a_webhook_whose_broker_is_gone_stops_in_time_and_keeps_what_it_took(
    settings: Settings, broker: KafkaProxy, tmp_path: Path, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    env = {**settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
           "TRADINGVIEW_HMAC_SECRET": SECRET,
           "MDP_WEBHOOK_PORT": str(port), "MDP_WEBHOOK_SPOOL_DIR": str(spool),
           "MDP_WEBHOOK_PUBLISH_TIMEOUT_S": "0.5"}  # fmt: skip
    webhook = role_process(["webhook"], env, log)
    processes.append(webhook)
    await _up(url, "ready: kafka connected")
    body, headers = _alert(0)
    assert (await post(url, body, headers))[0] == 202

    await broker.cut()
    for n in range(1, 4):
        body, headers = _alert(n)
        assert (await post(url, body, headers))[0] == 202  # spooled, not lost
    text = await stop_in_time(webhook, port, log, "webhook")
    assert "3 alerts not yet in Kafka stay in the spool" in text
    left = Spool(spool, 1 << 20)
    left.open()
    try:
        assert len(left.pending()) == 3
    finally:
        left.close()
