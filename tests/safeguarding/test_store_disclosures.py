"""Recording disclosures: durable before return, idempotent, encrypted at rest, audited append-only."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.safeguarding.cases import change_status, read_case
from bot.safeguarding.crypto import DecryptionError, EncryptionKeyError, load_cipher
from bot.safeguarding.store import (
    AuditEvent,
    AuditTrailIsAppendOnly,
    Disclosure,
    OutboxMessage,
    get_engine,
    new_reference,
)

WORDS = "my teacher says our chats are a secret"


def _new_engine(url: str):
    """A brand-new engine (own connection pool), not the one record_disclosure used."""
    return create_engine(url, future=True)


def test_reference_is_human_readable():
    references = {new_reference() for _ in range(500)}
    assert len(references) == 500
    for reference in references:
        assert re.fullmatch(r"SG-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}", reference)


def test_disclosure_is_committed_before_record_returns(any_settings, record):
    result = record(any_settings)

    assert result.stored == "database" and result.created
    engine = _new_engine(any_settings.database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT reference, status, source, school, audience, risk FROM disclosures")
            ).one()
            outbox = connection.execute(
                text("SELECT channel, recipient, kind, status FROM outbox_messages ORDER BY recipient")
            ).all()
            audit = connection.execute(text("SELECT action, actor FROM audit_events")).all()
    finally:
        engine.dispose()
    assert tuple(row) == (result.reference, "new", "action", "lunsford", "pupil", "immediate")
    assert [tuple(r) for r in outbox] == [
        ("email", "dsl@lunsford.example", "alert", "pending"),
        ("email", "head@lunsford.example", "alert", "pending"),
    ]
    assert [tuple(r) for r in audit] == [("created", "schoolguide")]


def test_same_message_is_recorded_once(any_settings, record):
    first = record(any_settings)
    again = record(any_settings, text="a retry of the same message")
    other = record(any_settings, message_id="msg-2")

    assert again.reference == first.reference and not again.created
    assert other.reference != first.reference and other.created
    with Session(get_engine(any_settings.database_url), future=True) as session:
        assert session.execute(select(func.count(Disclosure.id))).scalar_one() == 2
        assert session.execute(select(func.count(OutboxMessage.id))).scalar_one() == 4
        created = session.execute(select(func.count()).where(AuditEvent.action == "created")).scalar_one()
        assert created == 2


def test_words_and_context_are_encrypted_at_rest(settings, record):
    record(settings, context=[{"who": "user", "text": "my secret context line"}])
    database_file = settings.database_url.removeprefix("sqlite:///")
    engine = _new_engine(settings.database_url)
    with engine.connect() as connection:
        raw = connection.execute(text("SELECT text_encrypted, context_encrypted FROM disclosures")).one()
    engine.dispose()
    assert WORDS not in raw.text_encrypted and "secret" not in raw.context_encrypted
    for path in (database_file, database_file + "-wal"):
        if os.path.exists(path):
            content = open(path, "rb").read()
            assert WORDS.encode() not in content
            assert b"my secret context line" not in content
    case = read_case(settings, (record(settings).reference), actor="test")
    assert case.text == WORDS
    assert case.context == ({"who": "user", "text": "my secret context line"},)


def test_wrong_key_gives_a_clear_error(make_settings, record):
    from cryptography.fernet import Fernet

    settings = make_settings()
    reference = record(settings).reference
    other_key = dataclasses.replace(settings, encryption_key=Fernet.generate_key().decode())

    case = read_case(other_key, reference, actor="test")
    assert case.text is None
    assert "different key" in case.text_error and "SCHOOLGUIDE_ENCRYPTION_KEY" in case.text_error
    with Session(get_engine(settings.database_url), future=True) as session:
        token = session.execute(select(Disclosure.text_encrypted)).scalar_one()
    with pytest.raises(DecryptionError, match="different key"):
        load_cipher(other_key).decrypt(token)
    with pytest.raises(EncryptionKeyError, match="not a valid Fernet key"):
        load_cipher(dataclasses.replace(settings, encryption_key="not-a-key"))


def test_key_is_generated_once_with_owner_only_permissions(make_settings, record, caplog):
    settings = make_settings(encryption_key=None)
    with caplog.at_level("WARNING"):
        reference = record(settings).reference
    key_file = settings.var_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "SCHOOLGUIDE_ENCRYPTION_KEY" in caplog.text
    first_key = key_file.read_text()
    record(settings, message_id="msg-2")
    assert key_file.read_text() == first_key
    assert read_case(settings, reference, actor="test").text == WORDS


def test_rotated_keys_still_decrypt_old_records(make_settings, record):
    from cryptography.fernet import Fernet

    settings = make_settings()
    reference = record(settings).reference
    rotated = dataclasses.replace(
        settings, encryption_key=f"{Fernet.generate_key().decode()},{settings.encryption_key}"
    )
    assert read_case(rotated, reference, actor="test").text == WORDS


def test_status_change_and_read_are_audited_and_the_trail_is_append_only(any_settings, record):
    reference = record(any_settings).reference
    read_case(any_settings, reference, actor="Ms Patel (DSL)")
    assert change_status(any_settings, reference, "acknowledged", actor="Ms Patel (DSL)") == (
        "new",
        "acknowledged",
    )
    change_status(any_settings, reference, "closed", actor="Ms Patel (DSL)")

    engine = get_engine(any_settings.database_url)
    with Session(engine, future=True) as session:
        disclosure = session.execute(select(Disclosure)).scalar_one()
        assert disclosure.status == "closed"
        assert disclosure.acknowledged_by == "Ms Patel (DSL)" and disclosure.acknowledged_at is not None
        trail = session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        assert [(e.action, e.actor) for e in trail] == [
            ("created", "schoolguide"),
            ("read", "Ms Patel (DSL)"),
            ("status_changed", "Ms Patel (DSL)"),
            ("status_changed", "Ms Patel (DSL)"),
        ]
        assert trail[2].detail == {"from": "new", "to": "acknowledged"}
        # The ORM refuses to change or delete an audit event...
        trail[0].actor = "someone else"
        with pytest.raises(AuditTrailIsAppendOnly):
            session.flush()
        session.rollback()
        session.delete(session.get(AuditEvent, trail[0].id))
        with pytest.raises(AuditTrailIsAppendOnly):
            session.flush()
        session.rollback()
    # ...and so does the database itself, whatever client is used.
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(text(statement))
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM audit_events WHERE actor = 'x'")).scalar_one() == 0
        )
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 4


@pytest.mark.parametrize(
    "text_value",
    [
        "",
        None,
        12345,
        b"bytes \xff\xfe not utf-8",
        "emoji 😢🙈, RTL \u202eالسلام, zero-width\u200b, NUL\x00, lone surrogate \ud83d",
        "x" * 100_000,
        ["a", "list"],
    ],
    ids=["empty", "none", "int", "bytes", "odd-unicode", "huge", "list"],
)
def test_bad_input_is_recorded_not_crashed(settings, record, text_value):
    result = record(
        settings,
        text=text_value,
        school="\x00" * 3,
        audience="teacher?",
        channel=None,
        sender_id="s" * 5000,
        context="not a list",
        categories="self_harm_suicide",
        risk="EXTREME",
    )
    assert result.stored == "database"
    case = read_case(settings, result.reference, actor="test")
    assert case.school == "lunsford" and case.audience == "parent" and case.channel == "unknown"
    assert case.categories == ("self_harm_suicide",) and case.risk == "high"
    assert len(case.sender_id) <= 255
    if isinstance(text_value, str) and len(text_value) < 1000:
        assert case.text == text_value  # verbatim, even malformed unicode
    if text_value == "x" * 100_000:
        assert case.text == "x" * 20_000
        created = next(event for event in case.audit if event["action"] == "created")
        assert created["detail"]["text_truncated_from_chars"] == 100_000
    # The same odd message again is still recognised as the same message.
    assert record(settings, text=text_value, sender_id="s" * 5000).reference == result.reference


def test_long_distinct_sender_ids_do_not_collide(settings, record):
    first = record(settings, sender_id="a" * 300 + "1")
    second = record(settings, sender_id="a" * 300 + "2")
    assert first.reference != second.reference and second.created


def test_missing_message_id_never_merges_two_disclosures(settings, record):
    first = record(settings, message_id=None)
    second = record(settings, message_id="")
    assert first.created and second.created and first.reference != second.reference


def test_unknown_categories_become_other(settings, record):
    result = record(settings, categories=[None, "bullying", "made_up", 7, "bullying"], risk="medium")
    case = read_case(settings, result.reference, actor="test")
    assert case.categories == ("bullying", "other") and case.risk == "medium"


def test_no_alert_channel_configured_is_loud(make_settings, record, caplog):
    settings = make_settings(dsl_emails=(), alert_webhook_url=None)
    with caplog.at_level("ERROR"):
        result = record(settings)
    assert result.stored == "database"
    assert "NOBODY is being alerted" in caplog.text


def test_json_columns_round_trip_on_postgres(make_settings, postgres_url, record):
    settings = make_settings(database_url=postgres_url)
    reference = record(settings, categories=["bullying", "self_harm_suicide"]).reference
    engine = _new_engine(postgres_url)
    with engine.connect() as connection:
        categories = connection.execute(
            text("SELECT categories FROM disclosures WHERE reference = :r"), {"r": reference}
        ).scalar_one()
        triggers = (
            connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger "
                    "WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert (json.loads(categories) if isinstance(categories, str) else categories) == [
        "bullying",
        "self_harm_suicide",
    ]
    assert triggers == ["audit_events_append_only"]


def test_least_privilege_postgres_role_records_but_cannot_rewrite_the_audit_trail(
    make_settings, postgres_url, record
):
    """The documented production set-up: the application role may only SELECT and INSERT audit events."""
    from sqlalchemy.engine import make_url

    from bot.safeguarding.store import dispose_engines

    owner = make_settings(database_url=postgres_url)
    record(owner)  # the owner creates the tables and the trigger
    dispose_engines()
    schema = make_url(postgres_url).query["options"].split("=", 1)[1]
    role = f"sg_app_{schema[-12:]}"
    admin = _new_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
        connection.execute(text(f"GRANT SELECT, INSERT, UPDATE ON disclosures, outbox_messages TO {role}"))
        connection.execute(text(f"GRANT SELECT, INSERT ON audit_events TO {role}"))
        connection.execute(text(f"GRANT SELECT, UPDATE ON audit_chain_head TO {role}"))  # the chain's head
        connection.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
    try:
        app_url = make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
        app = make_settings(database_url=app_url)
        result = record(app, message_id="msg-2")
        assert result.stored == "database"
        assert read_case(app, result.reference, actor="Ms Patel").text == WORDS
        with pytest.raises(DBAPIError, match="permission denied"):
            with get_engine(app_url).begin() as connection:
                connection.execute(text("UPDATE audit_events SET actor = 'x'"))
    finally:
        dispose_engines()
        with admin.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_malformed_timestamp_and_context_still_record_the_words(settings, record):
    class Unprintable:
        def __str__(self):
            raise ValueError("no")

    result = record(settings, created_at="yesterday", context=[Unprintable()])
    assert result.stored == "database"
    assert read_case(settings, result.reference, actor="test").text == WORDS


def test_button_payloads_are_stored_as_what_the_person_did():
    from bot.safeguarding.service import readable_message

    assert readable_message("/disclose") == '(pressed the "Talk to a grown-up" button)'
    assert readable_message("/policy_report_post") == "(pressed a button: /policy_report_post)"
    assert readable_message("my step dad hits me") == "my step dad hits me"
    assert readable_message("/ not a payload") == "/ not a payload"


def _note(settings, reference, message_id, **extra):
    from bot.safeguarding.service import attach_contact_details

    return attach_contact_details(
        settings,
        disclosure_reference=reference,
        disclosure_sender_id=None,
        disclosure_message_id=None,
        sender_id="conv-1",
        message_id=message_id,
        text=f"Amy Lowe 5B ({message_id})",
        **extra,
    )


def test_an_older_notes_table_gains_channel_and_origin_in_place(any_settings, record):
    """A database from before notes said where they came from (disclosure_notes without channel and origin,
    holding a note): opening it adds the columns, the old note reads with neither, new notes carry both, and
    opening it again changes nothing. On SQLite and on PostgreSQL."""
    from bot.safeguarding.store import dispose_engines

    settings = any_settings
    reference = record(settings).reference
    assert _note(settings, reference, "m-old").stored == "database"
    engine = _new_engine(settings.database_url)
    with engine.begin() as connection:
        for column in ("channel", "origin"):
            connection.execute(text(f"ALTER TABLE disclosure_notes DROP COLUMN {column}"))
    dispose_engines()  # the next use opens the database afresh, as a new release would

    new = _note(settings, reference, "m-new", channel="socketio", origin="contact_form")
    assert new.stored == "database"
    for _ in range(2):  # and once more: idempotent
        dispose_engines()
        contact = read_case(settings, reference, actor="t").contact
        assert [(item["text"], item["channel"], item["origin"]) for item in contact] == [
            ("Amy Lowe 5B (m-old)", None, None),
            ("Amy Lowe 5B (m-new)", "socketio", "contact_form"),
        ]
    engine.dispose()
