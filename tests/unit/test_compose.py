"""compose.yaml, compose.official.yaml, Dockerfile and .dockerignore: checked statically (no
Docker engine needed), and the healthchecks' scripts run here against real servers.

The roles named in compose are checked against the real `mdp` click group, the app environment
against the real settings model, and the sandbox services against the `sandbox` package, so
renaming any of them breaks these tests. compose.official.yaml is merged over compose.yaml the
way Compose merges files (mappings key by key, the rest replaced) for the official-mode checks.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from prometheus_client import CollectorRegistry

from marketdata.metrics import MetricsServer
from marketdata.settings import (
    BINANCE_OFFICIAL,
    DEFAULT_KAFKA_PORT,
    DEFAULT_POSTGRES_PORT,
    PREFIXES,
    Settings,
)
from mdp.cli import cli
from tests.kafka_container import KAFKA_IMAGE as TESTCONTAINERS_KAFKA

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
OFFICIAL = ROOT / "compose.official.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

INFRA = {"kafka", "timescaledb"}
ONE_SHOT = {"migrate", "topics"}
APP = {
    "migrate",
    "topics",
    "producer-binance",
    "producer-ibkr",
    "producer-dtc",
    "processor",
    "sink",
    "webhook",
    "rollup",
}
# The sandbox venue each producer talks to in sandbox mode, by the venue's module.
SANDBOX = {"sandbox-binance": "sandbox.binance", "sandbox-tws": "sandbox.tws",
           "sandbox-dtc": "sandbox.dtc"}  # fmt: skip
VENUE_OF = {"producer-binance": "sandbox-binance", "producer-ibkr": "sandbox-tws",
            "producer-dtc": "sandbox-dtc"}  # fmt: skip
EXPECTED_SERVICES = INFRA | APP | set(SANDBOX)
LONG_RUNNING = EXPECTED_SERVICES - ONE_SHOT
# The setting whose port each role serves /health on (producers/process.py, sinks/service.py,
# webhook): the healthcheck must ask that one.
HEALTH_PORT_SETTING = {
    "producer-binance": "producer_metrics_port", "producer-ibkr": "producer_metrics_port",
    "producer-dtc": "producer_metrics_port", "sink": "metrics_port", "webhook": "webhook_port",
}  # fmt: skip
SECRETS = (
    "TRADINGVIEW_HMAC_SECRET",
    "TRADINGVIEW_PASSPHRASE",
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "IBKR_CLIENT_ID",
    "IBKR_HTTP_SANDBOX_URL",
    "DTC_PASSWORD",
)
# Where each producer finds its venue: fixed in compose.yaml (the sandbox services), passed
# through from the host in compose.official.yaml.
ADDRESSES = {
    "producer-binance": {"BINANCE_API_BASE_URL", "BINANCE_STREAM_URL"},
    "producer-ibkr": {"IBKR_HOST", "IBKR_PORT"},
    "producer-dtc": {"DTC_HOST", "DTC_PORT", "DTC_HISTORICAL_PORT"},
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_LOOPBACK = "127.0.0.1"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; Docker Compose rejects the file."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        assert key not in seen, f"duplicate key {key!r} on line {key_node.start_mark.line + 1}"
        seen.add(key)
    loader.flatten_mapping(node)  # `<<: *anchor` merges; later explicit keys override
    return dict(loader.construct_pairs(node, deep=True))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    assert isinstance(data, dict), f"{path.name} must be a mapping"
    return data


def _compose() -> dict[str, Any]:
    return _load(COMPOSE)


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge of a later file: mappings key by key, anything else replaced (enough for
    the keys compose.official.yaml sets: environment, profiles, extra_hosts)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


@functools.cache
def _official() -> dict[str, Any]:
    return dict(_merge(_compose(), _load(OFFICIAL)))


def _services(data: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    services = (data or _compose())["services"]
    assert isinstance(services, dict)
    return services


def _enabled(data: dict[str, Any], profiles: set[str]) -> set[str]:
    """The services Compose runs with these profiles active: those without a profile, and
    those with an active one."""
    return {
        name
        for name, service in _services(data).items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }


def _environment(service: str, data: dict[str, Any] | None = None) -> dict[str, str]:
    """The service's environment as a mapping, whether written as a mapping or a list."""
    env = _services(data)[service].get("environment", {})
    if isinstance(env, list):
        pairs = [str(item).split("=", 1) for item in env]
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    assert isinstance(env, dict)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _with_defaults(value: str) -> str:
    """Interpolate like compose does with an empty host environment: `${X:-d}` -> `d`."""
    return _INTERPOLATION.sub(lambda match: match.group("default") or "", value)


def _depends_on(service: str, data: dict[str, Any] | None = None) -> dict[str, str]:
    """Target -> condition; the short list form means `service_started`."""
    deps = _services(data)[service].get("depends_on", {})
    if isinstance(deps, list):
        return {str(target): "service_started" for target in deps}
    assert isinstance(deps, dict)
    return {
        str(target): str((spec or {}).get("condition", "service_started"))
        for target, spec in deps.items()
    }


def _required(service: str, target: str, data: dict[str, Any] | None = None) -> bool:
    deps = _services(data)[service].get("depends_on", {})
    return isinstance(deps, list) or (deps[target] or {}).get("required", True) is not False


def _command(service: str) -> list[str]:
    command = _services()[service].get("command")
    if isinstance(command, str):
        return command.split()
    assert isinstance(command, list), f"{service}: no command"
    return [str(part) for part in command]


def _listeners(value: str) -> dict[str, str]:
    """`NAME://host:port,...` -> {NAME: "host:port"}."""
    result: dict[str, str] = {}
    for entry in value.split(","):
        name, sep, address = entry.strip().partition("://")
        assert sep, f"not a listener: {entry!r}"
        result[name] = address
    return result


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_compose_parses_to_services_and_volumes() -> None:
    data = _compose()
    assert isinstance(data["services"], dict)
    assert isinstance(data.get("volumes"), dict)


def test_exactly_the_expected_services() -> None:
    assert set(_services()) == EXPECTED_SERVICES


def test_long_running_services_have_a_healthcheck() -> None:
    for name in LONG_RUNNING:
        check = _services()[name].get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        assert not check.get("disable", False), f"{name}: healthcheck disabled"
        test = check.get("test")
        assert isinstance(test, list), f"{name}: healthcheck test must be a list"
        assert test[0] in {"CMD", "CMD-SHELL"}, f"{name}: {test[0]!r}"
        assert len(test) > 1, f"{name}: healthcheck test has no command"
        assert all(str(part).strip() for part in test[1:]), f"{name}: empty command part"


def test_role_healthchecks_ask_what_each_role_knows() -> None:
    """Not `os.path.exists('/proc/1')`: the producers, the sink and the webhook ask their
    /health (a producer's: connected to its venue and receiving) on the port of the setting they
    serve it on, the processor checks what PID 1 is, a sandbox venue that its ports answer."""
    assert LONG_RUNNING - INFRA - set(SANDBOX) == set(HEALTH_PORT_SETTING) | {"processor", "rollup"}
    script = _compose()["x-health-script"]
    for name, setting in HEALTH_PORT_SETTING.items():
        assert setting in Settings.model_fields, setting
        assert _services()[name]["healthcheck"]["test"] == ["CMD", "python", "-c", script, setting]
    processor = " ".join(_services()["processor"]["healthcheck"]["test"])
    assert "/proc/1/cmdline" in processor
    assert "b'mdp'" in processor
    assert _services()["rollup"]["healthcheck"] == _services()["processor"]["healthcheck"]
    ports = _compose()["x-ports-script"]
    for name in SANDBOX:
        command = _command(name)
        listening = [_option(command, flag) for flag in ("--port", "--historical-port")
                     if flag in command]  # fmt: skip
        assert _services()[name]["healthcheck"]["test"] == ["CMD", "python", "-c", ports,
                                                            *listening], name  # fmt: skip
    kafka = " ".join(_services()["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in kafka
    assert "--bootstrap-server kafka:9092" in kafka
    postgres = _services()["timescaledb"]["healthcheck"]["test"]
    assert "pg_isready" in postgres


def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} not in {command}"
    return command[command.index(flag) + 1]


def _child_env(**settings: str) -> dict[str, str]:
    """This environment without any of the project's variables, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIXES)}
    return {**env, **settings}


async def _check(test: list[str], env: dict[str, str]) -> int:
    """Run a healthcheck's CMD here, with this interpreter as the image's `python`."""
    assert test[:2] == ["CMD", "python"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *test[2:], env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


@pytest.mark.parametrize("service", ["producer-binance", "sink", "webhook"])
async def test_an_http_healthcheck_follows_the_roles_health_on_its_configured_port(
    service: str,
) -> None:
    """Against the /health every role serves (marketdata.metrics), on a port that is not the
    default: healthy while it answers 200, unhealthy on 503 and when nothing listens."""
    test = _services()[service]["healthcheck"]["test"]
    variable = str(Settings.model_fields[HEALTH_PORT_SETTING[service]].alias)
    ready = [True]
    server = MetricsServer(CollectorRegistry(), lambda: ready[0], "127.0.0.1", 0)
    await server.start()
    env = _child_env(**{variable: str(server.port)})
    try:
        assert await _check(test, env) == 0
        ready[0] = False  # a producer: disconnected, or silent past its watchdog
        assert await _check(test, env) == 1
    finally:
        await server.aclose()
    assert await _check(test, env) == 1


async def test_a_sandbox_healthcheck_needs_every_port_of_the_venue() -> None:
    test = _services()["sandbox-dtc"]["healthcheck"]["test"]
    live = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    history = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    ports = [str(server.sockets[0].getsockname()[1]) for server in (live, history)]
    async with live:
        async with history:
            assert await _check([*test[:4], *ports], _child_env()) == 0
        assert await _check([*test[:4], *ports], _child_env()) == 1


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    for name in _services():
        for target, condition in _depends_on(name).items():
            assert target in _services(), f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            assert condition in CONDITIONS, f"{name} -> {target}: {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in _services()[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{target} is not a one-shot job"


def test_startup_order() -> None:
    for name in APP - ONE_SHOT - {"rollup"}:  # the rollup job needs no Kafka (checked apart)
        assert _depends_on(name).get("kafka") == "service_healthy", name
        assert _depends_on(name).get("topics") == "service_completed_successfully", name
        assert _services()[name].get("restart") == "unless-stopped", name
    for producer, venue in VENUE_OF.items():
        assert _depends_on(producer)[venue] == "service_healthy", producer
        # Official mode does not enable the venue: Compose drops an optional dependency only.
        assert not _required(producer, venue), producer
    for name in SANDBOX:
        assert not _depends_on(name), name
        assert _services()[name].get("restart") == "unless-stopped", name
    assert _depends_on("migrate") == {"timescaledb": "service_healthy"}
    assert _services()["migrate"].get("restart") == "no"
    sink = _depends_on("sink")
    assert sink["migrate"] == "service_completed_successfully"
    assert sink["kafka"] == "service_healthy"


def test_app_services_build_the_project_and_run_real_mdp_subcommands() -> None:
    assert isinstance(cli, click.Group)
    for name in APP:
        service = _services()[name]
        assert service.get("build") == ".", name
        assert "image" not in service, name
        assert service.get("entrypoint") == ["mdp"], name
        command = _command(name)
        assert command[0] in cli.commands, f"{name}: `mdp {command[0]}` does not exist"
        assert command[0] not in {"services", "config"}, f"{name}: not a role"
    assert _command("migrate") == ["migrate"]
    assert _command("topics") == ["topics"]
    assert _command("processor") == ["process"]
    assert _command("sink") == ["sink"]
    assert _command("webhook") == ["webhook"]


def test_sandbox_services_run_the_shipped_venues_from_the_image() -> None:
    for name, module in SANDBOX.items():
        service = _services()[name]
        assert service.get("build") == ".", name
        assert "image" not in service, name
        assert service.get("entrypoint") == ["python"], name
        command = _command(name)
        assert command[:2] == ["-m", module], name
        assert importlib.util.find_spec(module) is not None, module
        # Other containers reach it; nothing is published on the host.
        assert _option(command, "--host") == "0.0.0.0", name  # noqa: S104
        assert "ports" not in service, name


def test_every_producer_in_sandbox_mode_talks_to_its_sandbox_service() -> None:
    """The addresses the producer's settings resolve to (as the producer reads them) are the
    sandbox service's name and the ports its command listens on."""
    for producer, venue in VENUE_OF.items():
        env = {key: _with_defaults(value) for key, value in _environment(producer).items()}
        settings = Settings.from_env(env)
        assert settings.providers_sandbox_mode == "sandbox"
        command = _command(venue)
        port = int(_option(command, "--port"))
        if producer == "producer-binance":
            for url in (settings.binance_rest, settings.binance_stream):
                assert (urlsplit(url).hostname, urlsplit(url).port) == (venue, port), url
        elif producer == "producer-ibkr":
            assert (settings.ibkr_host, settings.ibkr_api_port) == (venue, port)
        else:
            history = int(_option(command, "--historical-port"))
            assert (settings.dtc_host, settings.dtc_ports) == (venue, (port, history))


def test_one_producer_service_per_cli_venue() -> None:
    produce = cli.commands["produce"]
    assert isinstance(produce, click.Group)
    venues = set(produce.commands)
    producers = {name for name in _services() if name.startswith("producer-")}
    assert producers == {f"producer-{v}" for v in venues}
    for v in venues:
        assert _command(f"producer-{v}")[:2] == ["produce", v]


def test_the_rollup_service_runs_the_job_as_mdp_run_does() -> None:
    """`mdp rollup --every 60` (options the real command takes), the sink's environment and
    database, started once the tables are migrated, and kept up (it idles on TimescaleDB rather
    than exit, so `unless-stopped` does not restart it in a loop)."""
    from mdp.pipeline import ROLLUP_EVERY_S, plan  # noqa: PLC0415

    command = _command("rollup")
    assert command == ["rollup", "--every", str(ROLLUP_EVERY_S)]
    [spec] = plan(Settings.from_env({}), ["rollup"])
    assert list(spec.argv[2:5]) == command  # what `mdp run` runs, less its board's port
    rollup = cli.commands["rollup"]
    assert rollup.make_context("rollup", command[1:]).params["every"] == ROLLUP_EVERY_S
    for data in (_compose(), _official()):
        assert _environment("rollup", data) == _environment("sink", data)
    assert _depends_on("rollup") == {"timescaledb": "service_healthy",
                                     "migrate": "service_completed_successfully"}  # fmt: skip
    assert _services()["rollup"]["restart"] == "unless-stopped"
    assert "ports" not in _services()["rollup"]


def test_processor_is_scalable() -> None:
    processor = _services()["processor"]
    assert "container_name" not in processor
    assert "ports" not in processor
    for name, service in _services().items():
        assert "container_name" not in service, f"{name}: container_name blocks scaling"


def test_app_environment_names_and_values_are_valid_settings() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    for name in APP:
        env = _environment(name)
        unknown = set(env) - aliases
        assert not unknown, f"{name}: variables the settings do not read: {sorted(unknown)}"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["PROVIDERS_SANDBOX_MODE"] == "sandbox", name  # the mode is the file's
        resolved = {key: _with_defaults(value) for key, value in env.items()}
        settings = Settings.from_env(resolved)
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.providers_sandbox_mode == "sandbox"
        assert settings.database == "postgresql://mdp:mdp@timescaledb:5432/marketdata"


# Settings no role in a container reads from its environment: those of `mdp services` on the
# host, a host path, and the symbol lists (the producers' commands take them, checked below).
NOT_FOR_CONTAINERS = {
    "MDP_SERVICES_BACKEND", "MDP_KAFKA_PORT", "MDP_KAFKA_HEAP", "MDP_POSTGRES_PORT",
    "MDP_CACHE_DIR", "MDP_STATE_DIR",
}  # fmt: skip
SYMBOLS_BY_COMMAND = {
    "BINANCE_SYMBOLS": "producer-binance", "IBKR_SYMBOLS": "producer-ibkr",
    "DTC_SYMBOLS": "producer-dtc",
}  # fmt: skip


def test_every_setting_a_role_reads_is_passed_through() -> None:
    """Derived from the settings model: a new setting that compose forgets fails here."""
    aliases = {str(field.alias) for field in Settings.model_fields.values()}
    assert NOT_FOR_CONTAINERS | set(SYMBOLS_BY_COMMAND) <= aliases
    wanted = aliases - NOT_FOR_CONTAINERS - set(SYMBOLS_BY_COMMAND)
    for name in APP:
        env = _environment(name)
        missing = wanted - set(env)
        assert not missing, f"{name}: settings not passed through: {sorted(missing)}"
        fixed = {"KAFKA_BOOTSTRAP_SERVERS", "MARKET_DATA_DATABASE_URL", "MDP_WEBHOOK_HOST",
                 "PROVIDERS_SANDBOX_MODE", *ADDRESSES.get(name, ())}  # fmt: skip
        for variable, value in env.items():
            names = {m.group("name") for m in _INTERPOLATION.finditer(value)}
            assert variable in names or variable in fixed, f"{name}: {variable}={value!r}"
    for variable, service in SYMBOLS_BY_COMMAND.items():
        assert any(f"${{{variable}:-" in part for part in _command(service)), service


def test_every_path_runs_the_same_kafka() -> None:
    """compose, the native broker of `mdp services` and the testcontainers broker of the tests:
    one Kafka version (the tests ran Kafka 3.9 beside 4.1.1)."""
    image = _services()["kafka"]["image"]
    native = ROOT / "mdp" / "services" / "kafka-pom.xml"
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", native.read_text())
    assert found is not None
    assert image == TESTCONTAINERS_KAFKA == f"apache/kafka:{found.group(1)}"


def test_database_url_matches_the_timescaledb_service() -> None:
    db = _environment("timescaledb")
    url = _environment("sink")["MARKET_DATA_DATABASE_URL"]
    assert url == (
        f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}"
        f"@timescaledb:5432/{db['POSTGRES_DB']}"
    )
    assert db["POSTGRES_USER"] == "mdp"
    assert db["POSTGRES_DB"] == "marketdata"
    assert db["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-mdp}"
    image = _services()["timescaledb"]["image"]
    assert re.fullmatch(r"timescale/timescaledb:(latest|2\.\d+\.\d+)-pg16", image), image


def test_secrets_are_passed_through_without_values() -> None:
    for name, data in itertools.product(APP, (_compose(), _official())):
        env = _environment(name, data)
        for secret in SECRETS:
            assert env.get(secret) == f"${{{secret}:-}}", f"{name}: {secret}={env.get(secret)!r}"
    # Nowhere in the files (comments aside) may a secret name be given any other value.
    for path in (COMPOSE, OFFICIAL):
        for secret, line in itertools.product(SECRETS, path.read_text("utf-8").splitlines()):
            code = line.split("#", 1)[0]
            match = re.search(rf"\b{secret}\s*[:=]\s*(\S.*)?$", code)
            if match and match.group(1):
                assert match.group(1).strip() == f"${{{secret}:-}}", line


def test_host_ports_are_bound_to_loopback() -> None:
    published = 0
    for name, service in _services().items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == _LOOPBACK, f"{name}: {port}"
            else:
                assert str(port).startswith(f"{_LOOPBACK}:"), f"{name}: {port}"
                resolved = _with_defaults(str(port))
                assert resolved.count(":") == 2, f"{name}: {port} is not host_ip:host:container"
    assert published == 3
    # The container port is the one the webhook listens on (MDP_WEBHOOK_PORT, passed through).
    port = f"${{MDP_WEBHOOK_PORT:-{Settings.model_fields['webhook_port'].default}}}"
    assert _services()["webhook"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert _environment("webhook")["MDP_WEBHOOK_PORT"] == "${MDP_WEBHOOK_PORT:-}"
    assert _services()["timescaledb"]["ports"] == [
        f"127.0.0.1:${{MDP_POSTGRES_PORT:-{DEFAULT_POSTGRES_PORT}}}:5432"
    ]


def test_kafka_advertises_the_published_host_port() -> None:
    env = _environment("kafka")
    host_address = f"127.0.0.1:${{MDP_KAFKA_PORT:-{DEFAULT_KAFKA_PORT}}}"
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    listeners = _listeners(env["KAFKA_LISTENERS"])
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    assert set(listeners) == {entry.split(":")[0] for entry in protocol_map}
    assert set(advertised) <= set(listeners)
    host_listeners = [name for name, address in advertised.items() if address == host_address]
    assert len(host_listeners) == 1, advertised
    container_port = listeners[host_listeners[0]].rpartition(":")[2]
    assert _services()["kafka"]["ports"] == [f"{host_address}:{container_port}"]
    internal = [name for name, address in advertised.items() if address == "kafka:9092"]
    assert len(internal) == 1, advertised
    assert listeners[internal[0]].endswith(":9092")
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == internal[0]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    assert controller not in advertised
    controller_port = listeners[controller].rpartition(":")[2]
    assert (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:{controller_port}"
    )


def test_kafka_is_a_single_kraft_node() -> None:
    service = _services()["kafka"]
    env = _environment("kafka")
    assert service["image"] == "apache/kafka:4.1.1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["CLUSTER_ID"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key


def test_data_lives_in_named_volumes() -> None:
    volumes = _compose()["volumes"]
    expected = {"kafka": "/var/lib/kafka/data", "timescaledb": "/var/lib/postgresql/data"}
    for name, target in expected.items():
        mounts = [str(m) for m in _services()[name]["volumes"]]
        named = [m.split(":")[0] for m in mounts if m.endswith(f":{target}")]
        assert len(named) == 1, f"{name}: {mounts}"
        assert named[0] in volumes, f"{name}: {named[0]} is not a named volume"
    assert _environment("kafka")["KAFKA_LOG_DIRS"] == expected["kafka"]


def test_dockerfile_runs_mdp_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["mdp"]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    installs = [
        rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest
    ]
    assert any("--no-cache-dir ." in rest for rest in installs)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".mdp", ".git", ".env", "compose.yaml", "compose.official.yaml"} <= patterns
    assert not patterns & {"marketdata", "mdp", "migrations", "pyproject.toml", "README.md"}


def _dockerignore() -> list[re.Pattern[str]]:
    """.dockerignore's patterns as Docker reads them: Go's filepath.Match (`*` and `?` stop at
    `/`) where `**` spans directories, a leading `**/` none as well."""
    patterns = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = line.strip().strip("/")
        if not pattern or pattern.startswith("#"):
            continue
        assert not pattern.startswith("!"), "exceptions: _ignored would need Docker's order rule"
        parts = re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern)
        regex = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        patterns.append(re.compile("".join(
            regex.get(part, part if part.startswith("[") else re.escape(part)) for part in parts
        )))  # fmt: skip
    return patterns


def _build_context(into: Path) -> Path:
    """What `docker build .` sends: the checkout less what .dockerignore excludes (a pattern
    excludes what it matches and everything below)."""
    patterns = _dockerignore()
    for directory, subdirectories, files in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT)
        kept = [
            name for name in subdirectories
            if not any(p.fullmatch((relative / name).as_posix()) for p in patterns)
        ]  # fmt: skip
        subdirectories[:] = kept
        for name in files:
            path = (relative / name).as_posix()
            if not any(p.fullmatch(path) for p in patterns):
                (into / relative).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, into / path)
    return into


def test_the_dockerignore_reading_is_dockers() -> None:
    patterns = _dockerignore()
    ignored_paths = (
        ".venv",
        ".git",
        "tests",
        "sandbox/__pycache__",
        "__pycache__",
        "mdp/services/__pycache__",
        "sandbox/tws.pyc",
        "x.egg-info",
        ".env",
    )
    for ignored in ignored_paths:
        assert any(p.fullmatch(ignored) for p in patterns), ignored
    for kept in ("sandbox", "sandbox/tws.py", "sandbox/fixtures/ibkr/trades.json", "mdp",
                 "pyproject.toml", "README.md", "migrations", "alembic.ini"):  # fmt: skip
        assert not any(p.fullmatch(kept) for p in patterns), kept


def test_the_image_installs_the_sandbox_venues_and_their_recordings(tmp_path: Path) -> None:
    """The image's `pip install .` from its build context, here: the wheel holds every module
    of the sandbox package and every recording the venues replay."""
    instructions = _dockerfile_instructions()
    install = next(i for i, (k, rest) in enumerate(instructions) if "pip install" in rest)
    assert ("COPY", ". .") in instructions[:install]
    context = _build_context(tmp_path / "context")
    assert not (context / "tests").exists()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
         str(context)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("marketdata_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        installed = set(archive.namelist())
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "sandbox").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {path for path in shipped if path.startswith("sandbox/fixtures/")}
    assert {"sandbox/binance.py", "sandbox/tws.py", "sandbox/dtc.py"} <= shipped
    assert shipped <= installed, sorted(shipped - installed)


def test_sandbox_mode_needs_no_profile() -> None:
    """Plain `docker compose up`: every service, the sandbox venues and all three producers."""
    assert _enabled(_compose(), set()) == EXPECTED_SERVICES


@pytest.mark.parametrize("profiles", [set(), {"ibkr"}, {"dtc"}, {"ibkr", "dtc"}])
def test_official_mode_runs_no_sandbox_venue_and_ibkr_and_dtc_by_profile(
    profiles: set[str],
) -> None:
    enabled = _enabled(_official(), profiles)
    assert not enabled & set(SANDBOX)
    producers = {name for name in enabled if name.startswith("producer-")}
    assert producers == {"producer-binance"} | {f"producer-{profile}" for profile in profiles}
    assert enabled == EXPECTED_SERVICES - set(SANDBOX) - set(VENUE_OF) | producers
    # A valid model: whatever an enabled service requires is enabled too.
    for name in enabled:
        for target in _depends_on(name, _official()):
            assert target in enabled or not _required(name, target, _official()), (name, target)


def test_official_mode_talks_to_the_real_venues() -> None:
    for name in APP:
        env = _environment(name, _official())
        resolved = {key: _with_defaults(value) for key, value in env.items()}
        assert not [value for value in resolved.values() for venue in SANDBOX if venue in value]
        settings = Settings.from_env(resolved)
        assert settings.providers_sandbox_mode == "official", name
        assert (settings.binance_rest, settings.binance_stream) == BINANCE_OFFICIAL
        # The venue addresses come from the host's environment (or .env) again.
        for variable in set().union(*ADDRESSES.values()):
            assert {m.group("name") for m in _INTERPOLATION.finditer(env[variable])} == {
                variable
            }, (name, variable)
    # TWS and Sierra Chart run on the host unless told otherwise.
    for name in ("producer-ibkr", "producer-dtc"):
        settings = Settings.from_env(
            {key: _with_defaults(value) for key, value in _environment(name, _official()).items()}
        )
        assert settings.ibkr_host == settings.dtc_host == "host.docker.internal"
        extra_hosts = _services(_official())[name]["extra_hosts"]
        assert "host.docker.internal:host-gateway" in extra_hosts, name


def test_the_official_file_only_switches_the_mode() -> None:
    """It overrides services of compose.yaml (a misspelt name would add a half-defined one),
    and only their mode: environment, profiles, the host's address."""
    overrides = _services(_load(OFFICIAL))
    assert set(overrides) <= set(_services())
    for name, service in overrides.items():
        assert set(service) <= {"environment", "profiles", "extra_hosts"}, name
    assert set(overrides) >= APP | set(SANDBOX)  # the mode of every role, every venue off
