from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from mdp.services.process import (
    ServiceStatus,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    tail,
)


def test_read_pid_only_reports_live_processes(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert read_pid(pidfile) is None
    pidfile.write_text("not a pid\n")
    assert read_pid(pidfile) is None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile.write_text(f"{child.pid}\n")
        assert read_pid(pidfile) == child.pid
    finally:
        child.kill()
        child.wait()
    assert read_pid(pidfile) is None


def test_stop_pid_stops_exactly_that_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stop_pid(child.pid, timeout=5)
        assert child.wait(timeout=5) != 0
        assert pid_alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_port_open_tells_listening_from_closed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port)


def test_status_line_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert tail(log, 2) == "line 48\nline 49"
    assert "no log" in tail(tmp_path / "missing.log")
    line = ServiceStatus("kafka", True, "127.0.0.1:1", "native", 42, log).line()
    assert line.split()[:3] == ["kafka", "up", "127.0.0.1:1"]
    assert "pid 42" in line
