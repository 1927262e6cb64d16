"""PostgreSQL from the distribution's server binaries, in a data directory of the project's own."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from marketdata.errors import ServiceError
from marketdata.settings import Settings
from mdp.services.process import ServiceStatus, port_open, read_pid, tail

log = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
USER: Final = "mdp"
DATABASE: Final = "marketdata"
# PostgreSQL refuses to run as root; as root we run it as the distribution's service account.
SERVICE_ACCOUNT: Final = "postgres"


def find_bindir() -> Path | None:
    """The server binaries: ``pg_config --bindir``, else the newest Debian layout present."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent)
    return versions[-1].parent if versions else None


def install_server() -> Path:
    """Install Debian's PostgreSQL server when it is missing and we may (root with apt-get)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(
            "PostgreSQL server binaries not found; install them (apt-get install postgresql)"
        )
    log.warning("PostgreSQL server binaries missing; installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        if subprocess.run(command, env=env, check=False).returncode != 0:
            raise ServiceError(f"`{' '.join(command)}` failed; install PostgreSQL by hand")
    bindir = find_bindir()
    if bindir is None:
        raise ServiceError("postgresql installed but initdb still not found")
    return bindir


def server_options(port: int, socket_dir: Path, preload_timescaledb: bool) -> list[str]:
    """Options for ``postgres``: loopback only, socket in our own directory, not port 5432."""
    options = [
        "-p", str(port), "-k", str(socket_dir), "-c", f"listen_addresses={HOST}",
        "-c", "max_connections=200", "-c", "shared_buffers=256MB",
    ]  # fmt: skip
    if preload_timescaledb:
        options += ["-c", "shared_preload_libraries=timescaledb"]
    return options


class NativePostgres:
    """initdb once into ``<state>/postgres/data``, run with pg_ctl, create the database."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.port = settings.postgres_port
        self.home = (settings.state_dir / "postgres").absolute()
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "run"
        self.log_file = self.home / "postgres.log"
        self.pidfile = self.home / "postgres.pid"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{DATABASE}"

    def _as_owner(self, command: Sequence[str]) -> list[str]:
        if os.geteuid() != 0:
            return list(command)
        return ["runuser", "-u", SERVICE_ACCOUNT, "--", *command]

    def _run(self, command: Sequence[str], what: str) -> None:
        result = subprocess.run(
            self._as_owner(command), capture_output=True, text=True, check=False, cwd="/"
        )
        if result.returncode != 0:
            raise ServiceError(
                f"{what} failed:\n{result.stdout}{result.stderr}\n{tail(self.log_file)}"
            )

    def _prepare_dirs(self) -> None:
        for directory in (self.home, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            account = pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SERVICE_ACCOUNT], check=True)
            account = pwd.getpwnam(SERVICE_ACCOUNT)
        for path in (self.home, *self.home.rglob("*")):
            os.chown(path, account.pw_uid, account.pw_gid)
        probe = subprocess.run(self._as_owner(["test", "-w", str(self.home)]), check=False)
        if probe.returncode != 0:
            raise ServiceError(
                f"the '{SERVICE_ACCOUNT}' account cannot reach {self.home}: a parent directory is "
                "not searchable by others; set MDP_STATE_DIR to a directory it can reach"
            )

    def start(self) -> ServiceStatus:
        bindir = find_bindir() or install_server()
        if read_pid(self.pidfile) is None:
            if port_open(HOST, self.port):
                raise ServiceError(
                    f"port {self.port} is taken by another process (set MDP_POSTGRES_PORT)"
                )
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                self._run(
                    [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", USER,
                     "--auth=trust", "--encoding=UTF8", "--locale=C"],
                    "initdb",
                )  # fmt: skip
            pkglibdir = _pkglibdir(bindir)
            preload = pkglibdir is not None and (pkglibdir / "timescaledb.so").exists()
            options = " ".join(server_options(self.port, self.socket_dir, preload))
            self._run(
                [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                 "-o", options, "-w", "-t", "60", "start"],
                "pg_ctl start",
            )  # fmt: skip
            postmaster = (self.data_dir / "postmaster.pid").read_text().split()[0]
            self.pidfile.write_text(f"{postmaster}\n")
        self._create_database()
        return self.status()

    def _create_database(self) -> None:
        admin_url = f"postgresql://{USER}@{HOST}:{self.port}/postgres"
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        except psycopg.Error as exc:
            raise ServiceError(f"PostgreSQL started but is not usable: {exc}") from exc

    def stop(self) -> bool:
        pid = read_pid(self.pidfile)
        if pid is not None:
            bindir = find_bindir()
            if bindir is None:
                raise ServiceError("pg_ctl not found to stop PostgreSQL")
            self._run(
                [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                "pg_ctl stop",
            )
        self.pidfile.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pidfile)
        running = pid is not None and port_open(HOST, self.port)
        address = f"{HOST}:{self.port}"
        return ServiceStatus(self.name, running, address, "native", pid, self.log_file)


def _pkglibdir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    command = str(pg_config) if pg_config.exists() else shutil.which("pg_config")
    if not command:
        return None
    result = subprocess.run([command, "--pkglibdir"], capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None
