"""``schoolguide train`` and ``schoolguide run``: train only when something changed, then run both servers.

The fingerprint covers everything a trained model depends on (config, domain, training data, the spaCy
pipeline and the Rasa version), so a second ``make run`` skips training and starts in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.action_auth import auth_headers, load_action_secret
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)
MODEL_PREFIX = "schoolguide-"
TRAINING_INPUTS = ("config.yml", "domain.yml", "data")
# Rasa's SQL tracker store, redacting disclosures once they are committed (bot/safeguarding/redaction.py).
TRACKER_STORE_TYPE = "bot.safeguarding.tracker_store.RedactingTrackerStore"
GENERATED_HEADER = "# Written by `schoolguide run` from the settings; edit the settings, not this file.\n"
# Servers whose end does not stop the others: a child's disclosure must still be answered, stored and alerted
# when the DSL's desk cannot start (its port taken by another copy, say).
OPTIONAL_SERVERS = frozenset({"desk"})
# What to open on each channel (mounted at /webhooks/<name>/): the widgets' pages, the others' webhooks.
CHANNEL_ENTRY_PATHS = {"rest": "webhook", "website": "", "pupil": "", "slack": "webhook", "teams": "webhook"}


def training_fingerprint(settings: Settings) -> str:
    """A short hash of every input the trained model depends on."""
    from bot.nlp.build import fingerprint as nlp_fingerprint

    digest = hashlib.sha256()
    for name in TRAINING_INPUTS:
        path = settings.home / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(settings.home)).encode())
            digest.update(file.read_bytes())
    digest.update(nlp_fingerprint(settings.knowledge_dir / "entities.yml").encode())
    digest.update(_rasa_version().encode())
    # TensorFlow's kernels are part of the recipe: oneDNN on or off trains a different model (bot/__init__.py)
    digest.update(f"onednn={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '')}".encode())
    return digest.hexdigest()[:16]


def _rasa_version() -> str:
    from importlib.metadata import version

    return version("rasa")


def model_path(settings: Settings) -> Path:
    return settings.home / "models" / f"{MODEL_PREFIX}{training_fingerprint(settings)}.tar.gz"


def ensure_nlp(settings: Settings) -> None:
    from bot.nlp.build import ensure_pipeline

    settings.spacy_model_path.parent.mkdir(parents=True, exist_ok=True)
    ensure_pipeline(settings.spacy_model_path, settings.knowledge_dir / "entities.yml")


def ensure_model(settings: Settings, force: bool = False) -> Path:
    """Train unless a model for the current fingerprint exists; returns the model's path."""
    ensure_nlp(settings)
    target = model_path(settings)
    if target.exists() and not force:
        logger.info("model is up to date: %s", target.name)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cmd = [
        _rasa(), "train",
        "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
        "--out", str(target.parent), "--fixed-model-name", target.name.removesuffix(".tar.gz"),
    ]  # fmt: skip
    logger.info("training: %s", " ".join(cmd))
    subprocess.run(cmd, cwd=settings.home, check=True, env=rasa_env(settings))
    logger.info("trained %s in %.0f s", target.name, time.monotonic() - started)
    _remove_old_models(target)
    return target


def install_model(trained: Path, target: Path) -> Path:
    """Make ``trained`` (a model trained elsewhere from the same fingerprint, e.g. by `schoolguide bench`'s
    timed run from scratch) the project's model at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(trained, partial)
    partial.replace(target)  # atomic: a reader never sees half a model
    _remove_old_models(target)
    logger.info("installed %s as %s", trained.name, target.name)
    return target


def _remove_old_models(target: Path) -> None:
    """Old models only take space; the newest one matches the fingerprint."""
    for old in target.parent.glob(f"{MODEL_PREFIX}*.tar.gz"):
        if old != target:
            old.unlink()


def _rasa() -> str:
    return str(Path(sys.executable).with_name("rasa"))


def rasa_env(settings: Settings) -> dict[str, str]:
    """The environment for Rasa and action-server processes: quiet TensorFlow, no telemetry."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # the same model on every CPU (see bot/__init__.py)
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env["SCHOOLGUIDE_HOME"] = str(settings.home)
    return env


def write_endpoints(settings: Settings) -> Path:
    """Write the endpoints Rasa uses (action server, tracker store) from the settings into var/."""
    from bot.safeguarding.file_modes import ENDPOINTS_FILE_NAME, private_dir, write_private

    url = urlsplit(settings.tracker_database_url)
    dialect = url.scheme.split("+")[0]
    private_dir(settings.var_dir)
    if dialect == "sqlite":
        tracker = {"type": TRACKER_STORE_TYPE, "dialect": "sqlite", "db": url.path.removeprefix("/")}
        private_dir(Path(tracker["db"]).parent)  # the store itself creates the file 0600
    else:
        tracker = {
            "type": TRACKER_STORE_TYPE,
            "dialect": dialect,
            "url": url.hostname,
            "port": url.port or 5432,
            "db": url.path.removeprefix("/"),
            "username": url.username,
            "password": url.password,
        }
    endpoints = {
        "action_endpoint": {
            "url": f"http://{_client_host(settings.bind_host)}:{settings.action_port}/webhook",
            # Rasa sends these headers with every action call; the action server refuses calls without them.
            "headers": auth_headers(load_action_secret(settings)),
        },
        "tracker_store": {k: v for k, v in tracker.items() if v is not None},
    }
    # Owner-only from the first byte: it holds the action server secret and maybe a database password.
    return write_private(
        settings.var_dir / ENDPOINTS_FILE_NAME, GENERATED_HEADER + yaml.safe_dump(endpoints, sort_keys=False)
    )


def _client_host(bind_host: str) -> str:
    """Where a local client reaches a server bound to ``bind_host``: loopback when it listens everywhere."""
    if bind_host in {"0.0.0.0", "::", ""}:
        return "127.0.0.1"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def write_credentials(settings: Settings) -> Path:
    """Write the input channels Rasa serves into var/, from the settings (secrets never live in git)."""
    from bot.channels import credentials
    from bot.safeguarding.file_modes import CREDENTIALS_FILE_NAME, write_private

    # Owner-only from the first byte: it holds the channel secrets and the REST token.
    return write_private(
        settings.var_dir / CREDENTIALS_FILE_NAME,
        GENERATED_HEADER + yaml.safe_dump(credentials(settings), sort_keys=False),
    )


def server_commands(settings: Settings, model: Path) -> dict[str, list[str]]:
    """The server processes: the action server (5055), the Rasa server (5005) and the DSL's desk (5080)."""
    endpoints = write_endpoints(settings)
    channels = write_credentials(settings)
    cors = [arg for origin in settings.cors_origins for arg in ("--cors", origin)]
    return {
        "action server": [sys.executable, "-m", "bot.action_server", "--actions", "actions",
                          "--interface", settings.bind_host, "--port", str(settings.action_port)],
        # Rasa's own CLI, started through bot.rasa_server for its speed fixes (same behaviour).
        "rasa server": [sys.executable, "-m", "bot.rasa_server", "run", "--model", str(model),
                        "--interface", settings.bind_host, "--port", str(settings.rasa_port),
                        "--endpoints", str(endpoints), "--credentials", str(channels), *cors],
        # The DSL's desk (bot/desk/web.py): its own interface, loopback unless SCHOOLGUIDE_DESK_HOST says
        # otherwise (behind the same reverse proxy as the channels in production).
        "desk": [sys.executable, "-m", "bot.desk.web",
                 "--interface", settings.desk_host, "--port", str(settings.desk_port)],
    }  # fmt: skip


def enabled_channels(settings: Settings) -> list[str]:
    """The names of the channels the Rasa server serves (those in var/credentials.yml), in that order."""
    import importlib

    from bot.channels import credentials

    names = []
    for class_path in credentials(settings):
        module, _, cls = class_path.rpartition(".")
        names.append(getattr(importlib.import_module(module), cls).name())
    return names


def startup_banner(settings: Settings) -> str:
    """What ``schoolguide run`` prints: the address of each channel that is on, and only those."""
    base = f"http://{_client_host(settings.bind_host)}:{settings.rasa_port}/webhooks"
    urls = [
        f"{name} {base}/{name}/{CHANNEL_ENTRY_PATHS.get(name, '')}" for name in enabled_channels(settings)
    ]
    desk = f"http://{_client_host(settings.desk_host)}:{settings.desk_port}/"
    return (
        f"SchoolGuide is starting: {', '.join(urls) or 'no channels'} (actions on {settings.action_port}; "
        f"the DSL's desk on {desk}). Press Ctrl-C to stop."
    )


def run_servers(settings: Settings, model: Path) -> int:
    """Run the servers in the foreground; Ctrl-C (or any one dying) stops them all."""
    from bot.doctor import log_findings  # what is missing for a real deployment, logged at every start
    from bot.safeguarding.file_modes import secure_runtime_files

    log_findings(settings)
    secure_runtime_files(settings)  # files an older release left wider are private before anything starts
    procs: dict[str, subprocess.Popen] = {}
    for name, cmd in server_commands(settings, model).items():
        logger.info("starting %s: %s", name, " ".join(cmd))
        procs[name] = subprocess.Popen(cmd, cwd=settings.home, env=rasa_env(settings), start_new_session=True)
    print(startup_banner(settings), flush=True)
    stopping = False

    def _stop(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    watched = dict(procs)
    try:
        while not stopping:
            for name, proc in list(watched.items()):
                if proc.poll() is None:
                    continue
                if name in OPTIONAL_SERVERS:
                    logger.error(
                        "%s exited with code %s (is port %s in use?); the assistant keeps running and alerts "
                        "still go out, but their links lead nowhere until the desk runs "
                        "(schoolguide desk serve)", name, proc.returncode, settings.desk_port,
                    )  # fmt: skip
                    del watched[name]
                    continue
                logger.error("%s exited with code %s; stopping", name, proc.returncode)
                code = proc.returncode or 1
                stopping = True
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print("SchoolGuide stopped.", flush=True)
    return code


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="build the spaCy pipeline and train the model if inputs changed"
    )
    train.add_argument("--force", action="store_true", help="train even when the model is up to date")
    train.set_defaults(func=lambda args: (ensure_model(get_settings(), force=args.force), 0)[1])

    run = subparsers.add_parser(
        "run", help="train if needed, then run the Rasa and action servers and the DSL's desk"
    )
    run.set_defaults(func=lambda args: run_servers(get_settings(), ensure_model(get_settings())))

    model = subparsers.add_parser("model-path", help="print the path of the model for the current inputs")
    model.set_defaults(func=lambda args: (print(model_path(get_settings())), 0)[1])

    endpoints = subparsers.add_parser("endpoints", help="write var/endpoints.yml from the settings")
    endpoints.set_defaults(func=lambda args: (print(write_endpoints(get_settings())), 0)[1])
