"""Training is skipped when nothing it depends on changed; endpoints come from the settings."""

import shutil
from dataclasses import replace

import pytest
import yaml

from bot.runner import (
    TRACKER_STORE_TYPE,
    install_model,
    model_path,
    server_commands,
    training_fingerprint,
    write_credentials,
    write_endpoints,
)
from bot.settings import Settings


@pytest.fixture
def project_copy(tmp_path, project_root):
    for name in ("config.yml", "domain.yml"):
        shutil.copy(project_root / name, tmp_path / name)
    shutil.copytree(project_root / "data", tmp_path / "data")
    shutil.copytree(project_root / "knowledge", tmp_path / "knowledge")
    base = Settings.from_env()
    return replace(base, home=tmp_path, knowledge_dir=tmp_path / "knowledge", var_dir=tmp_path / "var")


def test_fingerprint_is_stable(project_copy):
    assert training_fingerprint(project_copy) == training_fingerprint(project_copy)
    assert model_path(project_copy).name.startswith("schoolguide-")


@pytest.mark.parametrize(
    "change",
    [
        lambda home: (home / "config.yml").write_text((home / "config.yml").read_text() + "\n# tuned\n"),
        lambda home: (home / "domain.yml").write_text((home / "domain.yml").read_text() + "\n"),
        lambda home: (home / "data" / "nlu" / "extra.yml").write_text('version: "3.1"\n'),
        lambda home: (home / "knowledge" / "entities.yml").write_text(
            (home / "knowledge" / "entities.yml").read_text() + "\n# more\n"
        ),
    ],
    ids=["config", "domain", "training data", "entity vocabulary"],
)
def test_fingerprint_changes_with_any_training_input(project_copy, change):
    from bot.nlp.entities import load_vocabulary

    before = training_fingerprint(project_copy)
    (project_copy.home / "data" / "nlu").mkdir(parents=True, exist_ok=True)
    change(project_copy.home)
    load_vocabulary.cache_clear()
    assert training_fingerprint(project_copy) != before


def test_tensorflow_kernels_are_a_training_input(project_copy, monkeypatch):
    """Training runs with oneDNN off (the same model on every CPU); a model trained otherwise is retrained."""
    import os

    from bot.runner import rasa_env

    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"  # set by importing bot
    assert rasa_env(project_copy)["TF_ENABLE_ONEDNN_OPTS"] == "0"
    before = training_fingerprint(project_copy)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert training_fingerprint(project_copy) != before


def test_answers_and_clauses_do_not_force_retraining(project_copy):
    # The clause base is read by the action server at run time; editing an answer must not retrain.
    before = training_fingerprint(project_copy)
    (project_copy.knowledge_dir / "topics.yml").write_text(
        (project_copy.knowledge_dir / "topics.yml").read_text() + "\n"
    )
    assert training_fingerprint(project_copy) == before


def test_sqlite_endpoints(project_copy):
    settings = replace(project_copy, action_port=6055, tracker_database_url="sqlite:///var/t.db")
    endpoints = yaml.safe_load(write_endpoints(settings).read_text())
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:6055/webhook"
    assert endpoints["tracker_store"] == {"type": TRACKER_STORE_TYPE, "dialect": "sqlite", "db": "var/t.db"}


def test_postgres_endpoints(project_copy):
    url = "postgresql+psycopg2://sg:secret@db.internal:6543/conversations"
    endpoints = yaml.safe_load(write_endpoints(replace(project_copy, tracker_database_url=url)).read_text())
    assert endpoints["tracker_store"] == {
        "type": TRACKER_STORE_TYPE,
        "dialect": "postgresql",
        "url": "db.internal",
        "port": 6543,
        "db": "conversations",
        "username": "sg",
        "password": "secret",
    }


def test_server_commands_use_the_configured_ports(project_copy):
    settings = replace(
        project_copy, rasa_port=7005, action_port=7055, cors_origins=("https://school.example",)
    )
    cmds = server_commands(settings, project_copy.home / "models" / "m.tar.gz")
    assert cmds["action server"][-2:] == ["--port", "7055"]
    rasa = cmds["rasa server"]
    assert rasa[rasa.index("--port") + 1] == "7005"
    for cmd in cmds.values():  # loopback unless SCHOOLGUIDE_BIND_HOST says otherwise
        assert cmd[cmd.index("--interface") + 1] == "127.0.0.1"
    assert rasa[rasa.index("--cors") + 1] == "https://school.example"
    assert "--credentials" in rasa and "--endpoints" in rasa


def test_credentials_come_from_the_settings_and_are_private(project_copy):
    path = write_credentials(project_copy)
    channels = yaml.safe_load(path.read_text())
    assert "bot.channels.rest.ValidatingRestInput" in channels
    assert path.stat().st_mode & 0o077 == 0  # may hold secrets: readable by the owner only


def test_a_model_trained_elsewhere_becomes_the_project_model(tmp_path):
    """`schoolguide bench` on a fresh clone installs its timed from-scratch model (no second training)."""
    models = tmp_path / "models"
    models.mkdir()
    old = models / "schoolguide-0000000000000000.tar.gz"
    old.write_bytes(b"old model")
    trained = tmp_path / "work" / "bench-ours.tar.gz"
    trained.parent.mkdir()
    trained.write_bytes(b"new model bytes")
    target = models / "schoolguide-1111111111111111.tar.gz"

    assert install_model(trained, target) == target

    assert target.read_bytes() == b"new model bytes"
    assert trained.exists()  # copied, so the bench's work dir still holds its own result
    assert not old.exists()
    assert sorted(p.name for p in models.iterdir()) == [target.name]
