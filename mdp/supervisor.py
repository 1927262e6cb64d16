"""Every role as a child process of one `mdp run`: started in order, restarted when it dies,
stopped in order. asyncio subprocesses, no daemon manager: the run's lifetime is theirs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import ServiceError
from mdp.services.process import wait_for_port

log = logging.getLogger(__name__)

USAGE_ERROR: Final = 2  # click's exit status for bad options: restarting cannot help
GIVE_UP_AFTER: Final = 5  # restarts within a minute


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """One child process: ``argv`` after the interpreter, extra environment, where it reports."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    metrics_url: str | None = None
    ready_port: int | None = None  # a port that answers once the role is up (for the fakes)
    stop_order: int = 0  # lower stops first: producers before the processor before the sink


@dataclass
class Child:
    spec: RoleSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    recent: list[float] = field(default_factory=list)
    state: str = "starting"
    exit_code: int | None = None


class Supervisor:
    """Start with :meth:`start`, keep running with :meth:`watch`, end with :meth:`aclose`."""

    def __init__(
        self, specs: Sequence[RoleSpec], log_dir: Path, env: Mapping[str, str] | None = None
    ) -> None:
        """``env`` is every child's environment over this one (``Settings.to_env()``, so that
        each role reads the settings of the run), under each spec's own ``env``."""
        self.children = [Child(spec) for spec in specs]
        self.log_dir = log_dir
        self.env = dict(env or {})
        self._stopping = False

    def log_path(self, spec: RoleSpec) -> Path:
        return self.log_dir / f"{spec.name}.log"

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Start the children in order; with ``stop`` set meanwhile, start no more."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            if stop is not None and stop.is_set():
                child.state = "not started"
                continue
            await self._spawn(child)
            if child.spec.ready_port is not None:
                await self._wait_until_ready(child, child.spec.ready_port, 15.0)
            child.state = "running"

    async def _wait_until_ready(self, child: Child, port: int, within_s: float) -> None:
        process = child.process
        assert process is not None
        ready = await asyncio.to_thread(wait_for_port, "127.0.0.1", port, within_s,
                                        lambda: process.returncode is None)  # fmt: skip
        if not ready:
            raise ServiceError(
                f"{child.spec.name}: nothing listens on 127.0.0.1:{port} after {within_s:.0f} s"
                f" (see {self.log_path(child.spec)})"
            )

    async def _spawn(self, child: Child) -> None:
        with self.log_path(child.spec).open("ab") as output:
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
            output.flush()
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, *child.spec.argv, stdout=output, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env, **child.spec.env}, start_new_session=True,
            )  # fmt: skip

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart children that die (capped backoff), until ``stop`` is set."""
        backoff = {child.spec.name: Backoff(initial=1.0, maximum=30.0) for child in self.children}
        while not stop.is_set():
            for child in self.children:
                if child.process is None or child.process.returncode is None:
                    continue
                if child.state in ("failed", "restarting"):
                    continue
                await self._restart(child, backoff[child.spec.name], stop)
            await wait_or_stop(stop, 0.5)

    async def _restart(self, child: Child, backoff: Backoff, stop: asyncio.Event) -> None:
        assert child.process is not None
        child.exit_code = child.process.returncode
        now = time.monotonic()
        child.recent = [t for t in child.recent if t > now - 60] + [now]
        if child.exit_code == USAGE_ERROR or len(child.recent) > GIVE_UP_AFTER:
            child.state = "failed"
            log.error("%s exited with status %s; not restarted (see %s)", child.spec.name,
                      child.exit_code, self.log_path(child.spec))  # fmt: skip
            return
        child.state = "restarting"
        delay = backoff.next_delay()
        log.warning("%s exited with status %s; restarting in %.1f s", child.spec.name,
                    child.exit_code, delay)  # fmt: skip
        if await wait_or_stop(stop, delay):
            return
        child.restarts += 1
        await self._spawn(child)
        child.state = "running"

    async def aclose(self, timeout_s: float = 20.0) -> None:
        """SIGTERM in stop order (waiting for each group), SIGKILL what outlives ``timeout_s``."""
        for order in sorted({child.spec.stop_order for child in self.children}):
            group = [c for c in self.children if c.spec.stop_order == order]
            await asyncio.gather(*(self._stop(child, timeout_s) for child in group))

    async def _stop(self, child: Child, timeout_s: float) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            child.state = "stopped" if child.state != "failed" else child.state
            return
        child.state = "stopping"
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killed", child.spec.name, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        child.exit_code = process.returncode
        child.state = "stopped"
