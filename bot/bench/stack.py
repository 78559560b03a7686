"""The real stack for the bench: the Rasa server and the action server, started as ``schoolguide run`` starts
them (same commands from :func:`bot.runner.server_commands`), on free ports with the bench's own var/ dir and
databases. Each server is its own process group, always stopped in ``finally`` (:meth:`BenchStack.stop`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import requests

from bot.runner import rasa_env, server_commands
from bot.settings import Settings

logger = logging.getLogger(__name__)
STARTUP_TIMEOUT = 300
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_settings(base: Settings, var_dir: Path, database_url: str | None = None,
                   knowledge_dir: Path | None = None) -> Settings:  # fmt: skip
    """``base`` with its own var/ dir, free ports and (optionally) one database for store and trackers, on
    loopback (the load generator and the health checks call 127.0.0.1)."""
    rasa_port, action_port = free_port(), free_port()
    return replace(
        base,
        bind_host="127.0.0.1",
        var_dir=var_dir,
        spool_dir=var_dir / "spool",
        database_url=database_url or f"sqlite:///{var_dir / 'schoolguide.db'}",
        tracker_database_url=database_url or f"sqlite:///{var_dir / 'tracker.db'}",
        rasa_port=rasa_port,
        action_port=action_port,
        rasa_url=f"http://127.0.0.1:{rasa_port}",
        knowledge_dir=knowledge_dir or base.knowledge_dir,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a server process (or a CLI command) see ``settings``."""
    env = rasa_env(settings)
    env.update(
        {
            "SCHOOLGUIDE_VAR_DIR": str(settings.var_dir),
            "SCHOOLGUIDE_SPOOL_DIR": str(settings.spool_dir),
            "SCHOOLGUIDE_DATABASE_URL": settings.database_url,
            "SCHOOLGUIDE_TRACKER_DATABASE_URL": settings.tracker_database_url,
            "SCHOOLGUIDE_RASA_PORT": str(settings.rasa_port),
            "SCHOOLGUIDE_ACTION_PORT": str(settings.action_port),
            "SCHOOLGUIDE_RASA_URL": settings.rasa_url,
            "SCHOOLGUIDE_KNOWLEDGE_DIR": str(settings.knowledge_dir),
            "SCHOOLGUIDE_BIND_HOST": settings.bind_host,
        }
    )
    return env


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` and all its children, in MiB (None once it has gone)."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total / MIB
    except psutil.Error:
        return None


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


class BenchStack:
    """Rasa server + action server for one configuration; use as a context manager."""

    def __init__(self, settings: Settings, model: Path):
        self.settings = settings
        self.model = model
        self.procs: dict[str, subprocess.Popen] = {}
        self.commands = server_commands(settings, model)  # writes endpoints.yml and credentials.yml
        self.env = settings_env(settings)
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return self.settings.rasa_url

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str) -> None:
        log = self.settings.var_dir / f"{name.replace(' ', '-')}.log"
        with log.open("a") as out:
            self.procs[name] = subprocess.Popen(
                self.commands[name], cwd=self.settings.home, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def start(self) -> None:
        started = time.monotonic()
        self.settings.var_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("action server")
        self._spawn("rasa server")
        self._wait(f"http://127.0.0.1:{self.settings.action_port}/health")
        self._wait(f"{self.url}/")
        self._wait_for_model()
        self.startup_seconds = time.monotonic() - started
        logger.info("stack up in %.0f s (%s)", self.startup_seconds, self.url)

    def restart_action_server(self, knowledge_dir: Path) -> None:
        """Start a fresh action server reading ``knowledge_dir`` (the Rasa server keeps running)."""
        stop_process(self.procs.pop("action server"))
        self.settings = replace(self.settings, knowledge_dir=knowledge_dir)
        self.env = settings_env(self.settings)
        self._spawn("action server")
        self._wait(f"http://127.0.0.1:{self.settings.action_port}/health")

    def _alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.settings.var_dir / f"{name.replace(' ', '-')}.log"
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")

    def _wait(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self._alive()
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{url} not up after {STARTUP_TIMEOUT}s")

    def _wait_for_model(self) -> None:
        # The model loads after the HTTP server answers; an empty reply means "not yet".
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self._alive()
            try:
                reply = requests.post(
                    f"{self.url}/webhooks/rest/webhook",
                    json={"sender": "bench-warm-up", "message": "hello"},
                    timeout=30,
                )
                if reply.status_code == 200 and reply.json():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"model not loaded after {STARTUP_TIMEOUT}s")

    def rss(self) -> dict[str, float | None]:
        return {name: rss_mib(proc.pid) for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        self.procs.clear()


class MemorySampler:
    """Samples the stack's RSS every ``interval`` seconds in a thread: (seconds since start, label, rss)."""

    def __init__(self, stack: BenchStack, interval: float = 1.0):
        self.stack = stack
        self.interval = interval
        self.samples: list[dict] = []
        self.label = "idle"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(
                {"t": round(time.monotonic() - self._t0, 2), "phase": self.label, **self.stack.rss()}
            )
            self._stop.wait(self.interval)
