"""compose.yaml, Dockerfile and .dockerignore: checked statically (no Docker engine needed).

The roles named in compose are checked against the real `mdp` click group, and the app
environment against the real settings model, so renaming either breaks these tests.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from pathlib import Path
from typing import Any

import click
import yaml

from marketdata.settings import DEFAULT_KAFKA_PORT, DEFAULT_POSTGRES_PORT, Settings
from mdp.cli import cli
from tests.kafka_container import KAFKA_IMAGE as TESTCONTAINERS_KAFKA

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
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
}
EXPECTED_SERVICES = INFRA | APP
LONG_RUNNING = EXPECTED_SERVICES - ONE_SHOT
SECRETS = (
    "TRADINGVIEW_HMAC_SECRET",
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "IBKR_HOST",
    "IBKR_PORT",
    "IBKR_CLIENT_ID",
    "BINANCE_API_BASE_URL",
    "IBKR_HTTP_SANDBOX_URL",
)
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
def _compose() -> dict[str, Any]:
    data = yaml.load(COMPOSE.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: str) -> dict[str, str]:
    """The service's environment as a mapping, whether written as a mapping or a list."""
    env = _services()[service].get("environment", {})
    if isinstance(env, list):
        pairs = [str(item).split("=", 1) for item in env]
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    assert isinstance(env, dict)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _with_defaults(value: str) -> str:
    """Interpolate like compose does with an empty host environment: `${X:-d}` -> `d`."""
    return _INTERPOLATION.sub(lambda match: match.group("default") or "", value)


def _depends_on(service: str) -> dict[str, str]:
    """Target -> condition; the short list form means `service_started`."""
    deps = _services()[service].get("depends_on", {})
    if isinstance(deps, list):
        return {str(target): "service_started" for target in deps}
    assert isinstance(deps, dict)
    return {
        str(target): str((spec or {}).get("condition", "service_started"))
        for target, spec in deps.items()
    }


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


def test_app_role_healthchecks_can_fail() -> None:
    """Not `os.path.exists('/proc/1')`: the roles check what PID 1 is, the webhook and the sink
    their HTTP endpoints."""
    for name in LONG_RUNNING - INFRA - {"webhook", "sink"}:
        script = " ".join(_services()[name]["healthcheck"]["test"])
        assert "/proc/1/cmdline" in script, name
        assert "b'mdp'" in script, name
    webhook = " ".join(_services()["webhook"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/health" in webhook
    assert "urllib" in webhook
    sink = " ".join(_services()["sink"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{Settings.model_fields['metrics_port'].default}/health" in sink
    kafka = " ".join(_services()["kafka"]["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in kafka
    assert "--bootstrap-server kafka:9092" in kafka
    postgres = _services()["timescaledb"]["healthcheck"]["test"]
    assert "pg_isready" in postgres


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
    for name in APP - ONE_SHOT:
        assert _depends_on(name).get("kafka") == "service_healthy", name
        assert _depends_on(name).get("topics") == "service_completed_successfully", name
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


def test_one_producer_service_per_cli_venue() -> None:
    produce = cli.commands["produce"]
    assert isinstance(produce, click.Group)
    venues = set(produce.commands)
    producers = {name for name in _services() if name.startswith("producer-")}
    assert producers == {f"producer-{v}" for v in venues}
    for v in venues:
        assert _command(f"producer-{v}")[:2] == ["produce", v]


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
        assert env["PROVIDERS_SANDBOX_MODE"] == "${PROVIDERS_SANDBOX_MODE:-sandbox}", name
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
        for variable, value in env.items():
            names = {m.group("name") for m in _INTERPOLATION.finditer(value)}
            fixed = {"KAFKA_BOOTSTRAP_SERVERS", "MARKET_DATA_DATABASE_URL", "MDP_WEBHOOK_HOST"}
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
    for name in APP:
        env = _environment(name)
        for secret in SECRETS:
            assert env.get(secret) == f"${{{secret}:-}}", f"{name}: {secret}={env.get(secret)!r}"
    # Nowhere in the file (comments aside) may a secret name be given any other value.
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in SECRETS:
        for line in text.splitlines():
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
    assert _services()["webhook"]["ports"] == ["127.0.0.1:8080:8080"]
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
    assert {".venv", ".mdp", ".git", ".env"} <= patterns
    assert not patterns & {"marketdata", "mdp", "migrations", "pyproject.toml", "README.md"}


def test_the_image_contains_the_sandbox_venues_and_their_recordings() -> None:
    # compose runs the producers in sandbox mode by default, against `python -m sandbox.<venue>`.
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "sandbox").rglob("*.*")]
    assert any(path.startswith("sandbox/fixtures/") for path in files)
    for path in files:
        if "__pycache__" in path:
            continue
        # A pattern excludes a path when it matches the path or one of its parent directories.
        prefixes = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
        assert not [p for p in patterns for prefix in prefixes if fnmatch.fnmatch(prefix, p)], path
