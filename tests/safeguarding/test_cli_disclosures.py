"""``schoolguide disclosures ...`` run through its real argument parser against a real database."""

from __future__ import annotations

import argparse
import csv
import json
import os
import pwd
import stat

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.safeguarding import cli
from bot.safeguarding.store import AuditEvent, Disclosure, get_engine

WORDS = "my teacher says our chats are a secret"
# The reader is the account the command runs as: not $USER (the fixture sets it) and not a typed --by.
ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def run(settings, monkeypatch, capsys):
    """Run the CLI with the test settings in the environment; returns (exit code, stdout, stderr)."""
    env = {
        "SCHOOLGUIDE_VAR_DIR": str(settings.var_dir),
        "SCHOOLGUIDE_DATABASE_URL": settings.database_url,
        "SCHOOLGUIDE_TRACKER_DATABASE_URL": settings.tracker_database_url,
        "SCHOOLGUIDE_ENCRYPTION_KEY": settings.encryption_key,
        "SCHOOLGUIDE_SPOOL_DIR": str(settings.spool_dir),
        "SCHOOLGUIDE_DSL_EMAILS": ",".join(settings.dsl_emails),
        "SCHOOLGUIDE_SMTP_HOST": settings.smtp_host,
        "SCHOOLGUIDE_SMTP_PORT": str(settings.smtp_port),
        "USER": "mr.admin",
        "LOGNAME": "mr.admin",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def invoke(*argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="schoolguide")
        cli.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(list(argv))
        capsys.readouterr()
        code = args.func(args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def _audit(settings) -> list[tuple[str, str, str]]:
    with Session(get_engine(settings.database_url), future=True) as session:
        rows = session.execute(
            select(Disclosure.reference, AuditEvent.action, AuditEvent.actor)
            .join(Disclosure, Disclosure.id == AuditEvent.disclosure_id)
            .order_by(AuditEvent.id)
        ).all()
    return [tuple(row) for row in rows]


def test_list_json_shape_and_it_is_audited_as_a_read(settings, record, run):
    first = record(settings, text=WORDS, school="lunsford").reference
    second = record(
        settings,
        message_id="m2",
        text="I want to die",
        school="scotts",
        categories=["self_harm_suicide"],
        audience="staff",
    ).reference

    code, out, err = run("disclosures", "list", "--json", "--by", "Ms Patel")
    assert code == 0 and "--by is ignored" in err
    listed = json.loads(out)
    assert isinstance(listed, list) and len(listed) == 2
    required = {
        "reference",
        "sender_id",
        "school",
        "audience",
        "categories",
        "risk",
        "status",
        "created_at",
        "text",
    }
    for item in listed:
        assert required <= set(item)
    by_reference = {item["reference"]: item for item in listed}
    assert by_reference[first]["text"] == WORDS
    assert by_reference[first]["categories"] == ["sexual_abuse_grooming", "adult_boundary_breach"]
    assert by_reference[second]["school"] == "scotts" and by_reference[second]["audience"] == "staff"
    assert by_reference[second]["status"] == "new" and by_reference[second]["sender_id"] == "conv-1"
    assert by_reference[second]["created_at"].startswith("20")
    assert [a for a in _audit(settings) if a[1] == "read"] == [(first, "read", ME), (second, "read", ME)]

    code, out, _ = run("disclosures", "list", "--json", "--school", "scotts")
    assert [item["reference"] for item in json.loads(out)] == [second]
    assert _audit(settings)[-1] == (second, "read", ME)
    assert not any(actor in ("Ms Patel", "mr.admin") for _, _, actor in _audit(settings))


def test_plain_list_shows_no_words_and_is_not_a_read(settings, record, run):
    reference = record(settings).reference
    code, out, _ = run("disclosures", "list")
    assert code == 0 and reference in out and WORDS not in out
    assert all(action != "read" for _, action, _ in _audit(settings))


def test_show_prints_the_words_and_audits_the_read(settings, record, run):
    reference = record(settings, text="someone is sharing my nudes\nplease help 😢").reference
    code, out, _ = run("disclosures", "show", reference)
    assert code == 0
    assert "someone is sharing my nudes" in out and "please help" in out
    assert "user: hi" in out and reference in out and "email dsl@lunsford.example: pending" in out
    assert _audit(settings)[-1] == (reference, "read", ME)

    code, _, err = run("disclosures", "show", "SG-NOPE-NOPE")
    assert code == 1 and "no disclosure" in err


def test_show_survives_malformed_unicode(settings, record, run):
    reference = record(settings, text="broken \ud83d surrogate").reference
    code, out, _ = run("disclosures", "show", reference.lower())  # references are case-insensitive
    assert code == 0 and "surrogate" in out


def test_ack_moves_new_to_acknowledged_once(settings, record, run):
    reference = record(settings).reference
    code, out, _ = run("disclosures", "ack", reference)
    assert code == 0 and f"new -> acknowledged (by {ME})" in out
    code, out, _ = run("disclosures", "ack", reference, "--by", "Mr Other")
    assert code == 0 and "already acknowledged" in out
    with Session(get_engine(settings.database_url), future=True) as session:
        row = session.execute(select(Disclosure)).scalar_one()
    assert (row.status, row.acknowledged_by) == ("acknowledged", ME)
    assert [a for a in _audit(settings) if a[1] == "status_changed"] == [(reference, "status_changed", ME)]

    code, out, _ = run("disclosures", "status", reference, "closed")
    assert code == 0 and "acknowledged -> closed" in out
    code, out, _ = run("disclosures", "list", "--json", "--status", "closed")
    assert [item["reference"] for item in json.loads(out)] == [reference]


def test_a_typed_name_is_never_the_reader(settings, record, run, monkeypatch):
    """--by, $USER and $LOGNAME are the caller's to choose; the effective uid's account is not."""
    reference = record(settings).reference
    monkeypatch.setenv("SUDO_USER", "someone-else")  # only believed from root, which sudo would be
    code, _, err = run("disclosures", "ack", reference, "--by", "The Headteacher")
    assert code == 0 and "--by is ignored" in err
    expected = ME if os.geteuid() != 0 else f"{ME} (sudo by someone-else)"
    assert _audit(settings)[-1] == (reference, "status_changed", expected)


def test_export_csv_writes_an_owner_only_file_and_audits_each_row(settings, record, run, tmp_path):
    first = record(settings).reference
    second = record(settings, message_id="m2", text='quotes " and, commas\nand lines').reference
    output = tmp_path / "export.csv"

    code, _, err = run("disclosures", "export", "--csv", "--output", str(output))
    assert code == 0 and "Exported 2" in err
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    rows = list(csv.DictReader(output.open(encoding="utf-8", newline="")))
    assert [row["reference"] for row in rows] == [first, second]
    assert rows[0]["text"] == WORDS and rows[1]["text"] == 'quotes " and, commas\nand lines'
    assert rows[0]["categories"] == "sexual_abuse_grooming;adult_boundary_breach"
    exported = [a for a in _audit(settings) if a[1] == "exported"]
    assert exported == [(first, "exported", ME), (second, "exported", ME)]

    code, out, _ = run("disclosures", "export", "--csv")
    assert code == 0 and out.startswith("reference,created_at") and WORDS in out


def test_replay_deliver_and_reconcile_commands(settings, record, run, smtp_server, tmp_path):
    import dataclasses

    down = dataclasses.replace(
        settings, database_url="sqlite:///" + str(tmp_path / "file" / "x" / "db.sqlite")
    )
    (tmp_path / "file").write_text("")
    spooled = record(down)
    assert spooled.stored == "spool"

    code, out, _ = run("disclosures", "replay")
    assert code == 0 and "Replayed 1" in out
    code, out, _ = run("disclosures", "replay")
    assert code == 0 and "Replayed 0" in out

    handler = smtp_server(settings.smtp_port)
    code, out, _ = run("disclosures", "deliver")
    assert code == 0 and "Sent 2" in out and len(handler.messages) == 2

    code, out, _ = run("disclosures", "reconcile")
    assert code == 0 and "newly recorded: 0" in out

    code, out, _ = run("disclosures", "worker", "--once")
    assert code == 0 and json.loads(out)["errors"] == {}


def test_verify_audit_reports_ok_then_names_the_edited_row(settings, record, run):
    reference = record(settings).reference
    run("disclosures", "show", reference)
    code, out, _ = run("disclosures", "verify-audit")
    assert code == 0 and out.startswith("OK: 2 audit event(s)")

    engine = get_engine(settings.database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        edited = connection.exec_driver_sql("SELECT id FROM audit_events WHERE action = 'read'").scalar()
        connection.exec_driver_sql(f"UPDATE audit_events SET actor = 'nobody' WHERE id = {edited}")
    code, out, _ = run("disclosures", "verify-audit")
    assert code == 1 and f"row id {edited}" in out and "edited" in out


def test_show_says_where_each_contact_note_came_from(settings, record, run):
    from bot.safeguarding.service import attach_contact_details, prepare_note, store_note_in_database

    reference = record(settings, sender_id="conv-1", message_id="msg-1").reference
    common = dict(disclosure_reference=reference, disclosure_sender_id=None, disclosure_message_id=None)
    attach_contact_details(
        settings,
        **common,
        sender_id="conv-1",
        message_id="m2",
        text="Amy",
        channel="pupil",
        origin="contact_form",
    )
    replayed = prepare_note(
        settings,
        **common,
        sender_id="conv-1",
        message_id="m3",
        text="6B",
        channel="website",
        origin="contact_more",
    )
    store_note_in_database(settings, replayed, source="spool")  # as replay_spool does

    code, out, _ = run("disclosures", "show", reference)
    assert code == 0
    lines = out.splitlines()
    start = lines.index("Contact details given afterwards:")
    first, first_origin, second, second_origin = lines[start + 1 : start + 5]
    assert first.endswith("  Amy") and second.endswith("  6B")
    assert first_origin.strip().startswith("(from contact_form via pupil, added 20")
    assert second_origin.strip().startswith("(from contact_more via website, spool replay, added 20")
