from __future__ import annotations

from pathlib import Path

from marketdata.settings import Settings
from mdp.services.postgres_native import NativePostgres, find_bindir, server_options


def test_server_listens_on_loopback_with_its_own_socket_dir() -> None:
    options = server_options(15432, Path("/state/run"), preload_timescaledb=False)
    assert options[:4] == ["-p", "15432", "-k", "/state/run"]
    assert "listen_addresses=127.0.0.1" in options
    assert not any("timescaledb" in option for option in options)


def test_timescaledb_is_preloaded_when_installed() -> None:
    options = server_options(15432, Path("/run"), preload_timescaledb=True)
    assert "shared_preload_libraries=timescaledb" in options


def test_url_and_paths_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"MDP_STATE_DIR": str(tmp_path), "MDP_POSTGRES_PORT": "25432"})
    postgres = NativePostgres(settings)
    assert postgres.url == "postgresql://mdp@127.0.0.1:25432/marketdata"
    assert postgres.data_dir == tmp_path / "postgres" / "data"
    assert postgres.status().running is False


def test_server_binaries_are_found() -> None:
    bindir = find_bindir()
    assert bindir is not None
    assert (bindir / "initdb").exists()
    assert (bindir / "pg_ctl").exists()
