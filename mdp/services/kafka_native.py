"""Apache Kafka in KRaft mode from its Maven Central jars: one node, broker and controller."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Final

from marketdata.errors import ServiceError
from marketdata.settings import Settings
from mdp.services.process import (
    ServiceStatus,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    tail,
    wait_for_port,
)

log = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
START_TIMEOUT: Final = 90.0
_POM: Final = "kafka-pom.xml"


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """The broker's configuration: loopback only, single node, small and quick to start."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={HOST}:{controller_port}",
            f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=4",
            # Topics are created up front by `mdp` (faust does not create the ones it writes to);
            # a send to a missing topic should fail loudly, not invent a topic.
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]
    )


def log4j_properties(log_file: Path) -> str:
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = file",
            f"appender.file.fileName = {log_file}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            "logger.kafka.name = kafka",
            "logger.kafka.level = INFO",
            "",
        ]
    )


def cluster_id(source: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id in Kafka's own format (URL-safe base64 of a random UUID, unpadded).

    One id in 64 would begin with ``-``, which the storage tool reads as an option; Kafka's own
    ``Uuid.randomUuid()`` draws again in that case, and so do we.
    """
    while True:
        text = base64.urlsafe_b64encode(source().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ServiceError("java not found: Kafka 4 needs a Java 17+ runtime (set JAVA_HOME)")
    return java


class NativeKafka:
    """Fetches the jars into a cache outside the clone, formats storage once, runs the broker."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.port = settings.kafka_port
        self.controller_port = settings.kafka_port + 1
        self.heap = settings.kafka_heap
        self.home = (settings.state_dir / "kafka").absolute()
        self.data_dir = self.home / "data"
        self.pidfile = self.home / "kafka.pid"
        self.log_file = self.home / "server.log"
        self.console_log = self.home / "console.log"
        self.pom = resources.files("mdp.services").joinpath(_POM).read_bytes()
        digest = hashlib.sha256(self.pom).hexdigest()[:12]
        self.libs = (settings.cache_dir / f"kafka-{digest}" / "libs").absolute()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars with Maven once; later runs reuse the cache."""
        done = self.libs / ".complete"
        if done.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise ServiceError("mvn not found: it fetches the Kafka jars (apt-get install maven)")
        work = self.libs.parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_bytes(self.pom)
        staging = work / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("fetching the Kafka jars with Maven into %s", self.libs)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-2000:]
            raise ServiceError(f"Maven could not fetch the Kafka jars:\n{output}")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        done.write_text("ok\n")
        return self.libs

    def _run_java(self, main: str, *args: str, log4j: Path) -> list[str]:
        return [
            _java(), f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{self.libs}/*", main, *args,
        ]  # fmt: skip

    def format_command(self, cluster: str, config: Path, log4j: Path) -> list[str]:
        """The storage tool's ``format``; ``--cluster-id=ID`` in one word, so that even an id
        beginning with ``-`` cannot be read as an option."""
        return self._run_java(
            "kafka.tools.StorageTool", "format", "--standalone", f"--cluster-id={cluster}",
            "-c", str(config), log4j=log4j,
        )  # fmt: skip

    def start(self) -> ServiceStatus:
        pid = read_pid(self.pidfile)
        if pid is not None:
            return self._wait_ready(pid)
        if port_open(HOST, self.port):
            raise ServiceError(f"port {self.port} is taken by another process (set MDP_KAFKA_PORT)")
        self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(server_properties(self.data_dir, self.port, self.controller_port))
        log4j = self.home / "log4j2.properties"
        log4j.write_text(log4j_properties(self.log_file))
        if not (self.data_dir / "meta.properties").exists():
            fmt = self.format_command(cluster_id(), config, log4j)
            result = subprocess.run(fmt, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ServiceError(
                    f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}"
                )
        # Started through a shell that exits at once, so that the broker is not our child: it
        # outlives this command, and no Python process is left holding (and reaping) it.
        command = shlex.join(self._run_java("kafka.Kafka", str(config), log4j=log4j))
        console = shlex.quote(str(self.console_log))
        launched = subprocess.run(
            ["sh", "-c", f"setsid {command} >>{console} 2>&1 </dev/null & echo $!"],
            capture_output=True, text=True, check=True, cwd=self.home,
        )  # fmt: skip
        pid = int(launched.stdout.strip())
        self.pidfile.write_text(f"{pid}\n")
        return self._wait_ready(pid)

    def _wait_ready(self, pid: int | None) -> ServiceStatus:
        if pid is None or not wait_for_port(HOST, self.port, START_TIMEOUT, lambda: pid_alive(pid)):
            if pid is not None:
                stop_pid(pid, timeout=5)
            self.pidfile.unlink(missing_ok=True)
            raise ServiceError(
                f"Kafka did not start on {self.address}; last lines of {self.log_file}:\n"
                f"{tail(self.log_file)}\n{tail(self.console_log, 5)}"
            )
        return self.status()

    def stop(self) -> bool:
        pid = read_pid(self.pidfile)
        if pid is not None:
            stop_pid(pid)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pidfile)
        running = pid is not None and port_open(HOST, self.port)
        return ServiceStatus(self.name, running, self.address, "native KRaft", pid, self.log_file)
