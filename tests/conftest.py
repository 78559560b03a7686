"""Shared test set-up: keep background workers off, give every test its own var/ directory, and (for the e2e
tests in tests/e2e and tests/channels) start the real stack once per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

# The action package starts the safeguarding worker thread when imported by the action server; tests that
# want it start it themselves.
os.environ.setdefault("SCHOOLGUIDE_WORKER", "off")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def fresh_settings(monkeypatch, tmp_path):
    """Settings built from the environment with var/ under tmp_path; the cached settings are reset after."""
    from bot.settings import get_settings

    monkeypatch.setenv("SCHOOLGUIDE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


# --- PostgreSQL (SCHOOLGUIDE_TEST_POSTGRES_URL), for the tests that run on it as well as on SQLite ---

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _postgres_base_url() -> str:
    return os.environ.get("SCHOOLGUIDE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a brand-new schema, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = _postgres_base_url()
    admin = create_engine(base, future=True, connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        admin.dispose()
        pytest.skip(
            f"PostgreSQL not reachable at {make_url(base).render_as_string(hide_password=True)}: {exc}"
        )
    schema = f"sg_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        from bot.safeguarding.store import dispose_engines

        dispose_engines()  # their connections would stop the DROP
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- The real stack (Rasa server + action server via `schoolguide run`), shared by the e2e tests ---

STARTUP_TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    rasa_url: str
    action_url: str
    var_dir: Path
    env: dict
    log: Path

    def say(self, sender: str, message, metadata=None, timeout: float = 60) -> list[dict]:
        body = {"sender": sender, "message": message}
        if metadata is not None:
            body["metadata"] = metadata
        response = requests.post(f"{self.rasa_url}/webhooks/rest/webhook", json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()


def wait_for(condition, timeout: float, interval: float = 1.0):
    """Call ``condition`` until it returns something truthy (exceptions count as not yet); return that."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the server may not be up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s (last error: {last_error!r})")


@pytest.fixture(scope="session")
def e2e():
    """Helpers for tests that start their own servers."""
    from types import SimpleNamespace

    return SimpleNamespace(free_port=free_port, wait_for=wait_for, serve=serve)


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float | None = None) -> None:
    timeout = STARTUP_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stack exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"stack not up after {timeout}s:\n{log.read_text()[-4000:]}")


@contextmanager
def serve(command: list[str], env: dict, log: Path, health_url: str, timeout: float | None = None):
    """Run one server ``command`` in its own session (output to ``log``); yield the process once
    ``health_url`` answers 200, and stop it (SIGTERM, then SIGKILL) afterwards."""
    proc = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_until_up(health_url, proc, log, timeout)
        yield proc
    finally:
        stop_stack(proc, signal.SIGTERM, 20)


def start_stack(project_root: Path, var_dir: Path, extra_env: dict | None = None):
    """Run `schoolguide run` on free ports with its own var/ dir; returns (Stack, process)."""
    rasa_port, action_port = free_port(), free_port()
    env = dict(os.environ)
    env.pop("SCHOOLGUIDE_BIND_HOST", None)  # the default (loopback) is what the tests check
    env.update(
        {
            "SCHOOLGUIDE_RASA_PORT": str(rasa_port),
            "SCHOOLGUIDE_ACTION_PORT": str(action_port),
            # Its own desk port too: several stacks may run at once, and the desk is on by default.
            "SCHOOLGUIDE_DESK_PORT": str(free_port()),
            "SCHOOLGUIDE_VAR_DIR": str(var_dir),
            "SCHOOLGUIDE_WORKER": "on",
            "SCHOOLGUIDE_WORKER_INTERVAL_SECONDS": "1",
        }
    )
    env.update(extra_env or {})
    log = var_dir / "stack.log"
    var_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=project_root,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack = Stack(f"http://127.0.0.1:{rasa_port}", f"http://127.0.0.1:{action_port}", var_dir, env, log)
    try:
        _wait_until_up(f"{stack.action_url}/health", proc, log)
        _wait_until_up(f"{stack.rasa_url}/", proc, log)
        # The model is loaded asynchronously after the HTTP server answers.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if stack.say("warm-up", "hello"):
                break
            time.sleep(1)
    except Exception:
        stop_stack(proc)
        raise
    return stack, proc


def stop_stack(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Stop ``proc``'s process group with ``sig`` (SIGKILL after ``timeout`` seconds)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def stack(project_root, tmp_path_factory):
    running, proc = start_stack(project_root, tmp_path_factory.mktemp("stack") / "var")
    yield running
    stop_stack(proc)
    assert proc.returncode == 0, running.log.read_text()[-4000:]


# Browser tests: Debian's Chromium driven by Playwright (never a downloaded browser).
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


# Module scope: Playwright's sync API keeps its event loop running until it stops, which would break
# asyncio in every test that runs after the browser tests.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium) for browser tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()
