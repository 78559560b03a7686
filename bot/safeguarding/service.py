"""Recording a disclosure: in the database if at all possible, in the local spool if not, never raising.

``record_disclosure`` commits the disclosure, its "created" audit event and one outbox row per configured
DSL channel in a single transaction before it returns, so by the time the bot replies the record is durable
and the alerts are queued. If the database is unreachable the record (already encrypted, with its reference)
is fsync'd to the spool instead and ``replay_spool`` moves it into the database later. Both paths are
idempotent on ``(sender_id, message_id)``.

``attach_contact_details`` adds the optional contact details a pupil or parent gives after their disclosure
(a ``DisclosureNote``, encrypted, with a "contact_added" audit event and one outbox message per DSL channel
saying that contact details were added, without them). It follows the same rule: the database if the
disclosure is there, else the spool (a ``contact_note`` record that ``replay_spool`` attaches, and queues the
same messages for, once its disclosure is in the database), never raising. Contact details attach only to a
disclosure of the same conversation made in its current session (``attach_contact_details``); any other
target is refused, and nothing is stored.

Both go through one durable write (``_write_durably``): the database, else the spool, else a CRITICAL log
line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as DBInterfaceError
from sqlalchemy.orm import Session

from bot.safeguarding.categories import CATEGORIES, RISKS
from bot.safeguarding.crypto import DisclosureCipher, load_cipher
from bot.safeguarding.outbox import add_outbox_rows, contact_alert_kind
from bot.safeguarding.spool import Spool
from bot.safeguarding.store import (
    NOTE_KINDS,
    NOTE_ORIGINS,
    Disclosure,
    DisclosureNote,
    add_audit_event,
    as_utc,
    get_engine,
    new_reference,
    utcnow,
)
from bot.settings import AUDIENCES, Settings

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 20_000
MAX_CONTEXT_MESSAGES = 10
MAX_CONTEXT_CHARS = 2_000
SYSTEM_ACTOR = "schoolguide"
SPOOL_FORMAT = 1
# Spool records that are not disclosures say what they are; a record without "record_type" is a disclosure.
NOTE_RECORD_TYPE = "contact_note"

Stored = Literal["database", "spool", "log"]
T = TypeVar("T")


@dataclass(frozen=True)
class RecordResult:
    """Where the disclosure went. ``stored="log"`` means even the spool failed (logged at CRITICAL)."""

    reference: str
    stored: Stored
    created: bool = True  # False when this message had already been recorded


@dataclass(frozen=True)
class PreparedDisclosure:
    """A disclosure cleaned and encrypted, ready for the database or the spool."""

    reference: str
    school: str
    audience: str
    channel: str
    sender_id: str
    message_id: str
    categories: tuple[str, ...]
    risk: str
    created_at: datetime
    source: str
    text_chars: int
    text_truncated_from: int | None
    # Normally both set; None only when the key could not be loaded, and then only for the spool.
    text_encrypted: str | None
    context_encrypted: str | None
    # Only when encryption failed: the spool keeps the words rather than lose them (file mode 0600).
    plaintext: tuple[str, str] | None = None
    # Legacy keys the same message may already be recorded under (bot/safeguarding/turns.py).
    message_aliases: tuple[str, ...] = ()

    @property
    def message_keys(self) -> tuple[str, ...]:
        return (self.message_id, *self.message_aliases)

    def to_spool_record(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "plaintext"}
        record.update(
            format=SPOOL_FORMAT,
            created_at=self.created_at.isoformat(),
            categories=list(self.categories),
            message_aliases=list(self.message_aliases),
        )
        if self.plaintext is not None:
            record["unencrypted_text"], record["unencrypted_context"] = self.plaintext
        return record

    @classmethod
    def from_spool_record(
        cls, record: Mapping[str, Any], cipher: DisclosureCipher | None
    ) -> PreparedDisclosure:
        text_encrypted = record.get("text_encrypted")
        context_encrypted = record.get("context_encrypted")
        if text_encrypted is None or context_encrypted is None:
            if cipher is None:
                raise ValueError("record was spooled unencrypted and no encryption key is available")
            text_encrypted = cipher.encrypt(str(record.get("unencrypted_text") or ""))
            context_encrypted = cipher.encrypt(str(record.get("unencrypted_context") or "[]"))
        return cls(
            reference=str(record["reference"]),
            school=str(record["school"]),
            audience=str(record["audience"]),
            channel=str(record["channel"]),
            sender_id=str(record["sender_id"]),
            message_id=str(record["message_id"]),
            categories=tuple(record.get("categories") or ("other",)),
            risk=str(record.get("risk") or "high"),
            created_at=as_utc(datetime.fromisoformat(record["created_at"])),
            source=str(record.get("source") or "action"),
            text_chars=int(record.get("text_chars") or 0),
            text_truncated_from=record.get("text_truncated_from"),
            text_encrypted=text_encrypted,
            context_encrypted=context_encrypted,
            message_aliases=tuple(str(alias) for alias in record.get("message_aliases") or ()),
        )


# --- cleaning untrusted input -------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        try:
            return str(value)
        except Exception:
            return repr(type(value))
    return value


# Buttons send Rasa intent payloads; the DSL should read what the person did, not "/disclose".
BUTTON_WORDS = {"/disclose": '(pressed the "Talk to a grown-up" button)'}


def readable_message(text: str) -> str:
    """The message as the DSL should read it: button payloads become a description of the button."""
    stripped = text.strip()
    if stripped in BUTTON_WORDS:
        return BUTTON_WORDS[stripped]
    if stripped.startswith("/") and " " not in stripped and len(stripped) < 80:
        return f"(pressed a button: {stripped})"
    return text


def _label(value: Any, limit: int, default: str) -> str:
    """A short plain-text column value: no NULs or lone surrogates (PostgreSQL rejects both), capped."""
    text = _as_text(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return text[:limit] if text else default


def _key(value: Any, limit: int, default: str) -> str:
    """An identifier used for idempotency: too-long values are hashed, not cut, so they stay distinct."""
    text = _label(value, 10**6, default)
    if len(text) <= limit:
        return text
    return text[: limit - 72] + "~sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _categories(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        value = []
    cleaned: list[str] = []
    for item in value:
        label = _label(item, 50, "").lower()
        if label in CATEGORIES and label not in cleaned:
            cleaned.append(label)
        elif label and "other" not in cleaned:
            cleaned.append("other")  # an unknown category is still a concern
    return tuple(cleaned) or ("other",)


def _risk(value: Any) -> str:
    risk = _label(value, 20, "").lower()
    return risk if risk in RISKS else "high"  # unknown urgency is treated as high, never as low


def _context(value: Any) -> list[dict[str, str]]:
    if value is None or isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        value = [value] if value else []
    cleaned = []
    for item in list(value)[-MAX_CONTEXT_MESSAGES:]:
        if isinstance(item, Mapping):
            who = _label(item.get("who") or item.get("event"), 20, "unknown")
            text = _as_text(item.get("text"))
        else:
            who, text = "unknown", _as_text(item)
        cleaned.append({"who": who, "text": text[:MAX_CONTEXT_CHARS]})
    return cleaned


def _aliases(values: Any, canonical: str) -> tuple[str, ...]:
    """Legacy message keys, cleaned like the canonical one; never the canonical key itself."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values] if values else []
    cleaned = (_key(value, 255, "") for value in values)
    return tuple(dict.fromkeys(key for key in cleaned if key and key != canonical))


def prepare_disclosure(
    settings: Settings,
    *,
    school: Any,
    audience: Any,
    channel: Any,
    sender_id: Any,
    message_id: Any,
    text: Any,
    context: Any,
    categories: Any,
    risk: Any,
    source: str = "action",
    created_at: datetime | None = None,
    reference: str | None = None,
    message_aliases: Any = (),
) -> PreparedDisclosure:
    """Clean every field and encrypt the words; falls back to an unencrypted spool-only record if it must."""
    words = readable_message(_as_text(text))
    truncated_from = len(words) if len(words) > MAX_TEXT_CHARS else None
    words = words[:MAX_TEXT_CHARS]
    context_json = json.dumps(_context(context), ensure_ascii=True)
    audience_label = _label(audience, 20, settings.default_audience).lower()
    fields: dict[str, Any] = dict(
        reference=reference or new_reference(),
        school=_label(school, 100, settings.default_school),
        audience=audience_label if audience_label in AUDIENCES else settings.default_audience,
        channel=_label(channel, 64, "unknown"),
        sender_id=_key(sender_id, 255, "unknown"),
        # Without Rasa's message id there is nothing to de-duplicate on, so this message gets its own key.
        message_id=_key(message_id, 255, "") or f"no-message-id:{new_reference()}",
        categories=_categories(categories),
        risk=_risk(risk),
        created_at=as_utc(created_at) if created_at else utcnow(),
        # "failsafe": recorded by bot.safeguarding.failsafe when the Rasa server failed to handle the message.
        source=source if source in ("action", "spool", "reconcile", "failsafe") else "action",
        text_chars=len(words),
        text_truncated_from=truncated_from,
    )
    fields["message_aliases"] = _aliases(message_aliases, fields["message_id"])
    try:
        cipher = load_cipher(settings)
        return PreparedDisclosure(
            **fields, text_encrypted=cipher.encrypt(words), context_encrypted=cipher.encrypt(context_json)
        )
    except Exception:
        logger.critical(
            "Cannot encrypt disclosure %s: it will be spooled UNENCRYPTED (mode 0600) rather than lost. "
            "Fix SCHOOLGUIDE_ENCRYPTION_KEY, then run `schoolguide disclosures replay`.",
            fields["reference"],
            exc_info=True,
        )
        return PreparedDisclosure(
            **fields, text_encrypted=None, context_encrypted=None, plaintext=(words, context_json)
        )


# --- the database -------------------------------------------------------------------------------------------


def _existing(session: Session, prepared: PreparedDisclosure) -> Disclosure | None:
    """The disclosure of the same message, under its key or a legacy alias of it (turns.message_keys)."""
    keys = prepared.message_keys
    same_message = (Disclosure.sender_id == prepared.sender_id) & Disclosure.message_id.in_(keys)
    rows = (
        session.execute(
            select(Disclosure).where(or_(same_message, Disclosure.reference == prepared.reference))
        )
        .scalars()
        .all()
    )
    for key in keys:
        for row in rows:
            if row.sender_id == prepared.sender_id and row.message_id == key:
                return row
    return None


def _reference_taken(session: Session, reference: str) -> bool:
    return session.execute(select(Disclosure.id).where(Disclosure.reference == reference)).first() is not None


def store_in_database(
    settings: Settings,
    prepared: PreparedDisclosure,
    *,
    source: str,
    audit_detail: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Commit the disclosure, its audit event and its outbox rows together; returns (reference, created).

    Raises on database failure: callers decide between the spool and trying later.
    """
    if prepared.text_encrypted is None or prepared.context_encrypted is None:
        raise ValueError("refusing to store an unencrypted disclosure in the database")
    engine = get_engine(settings.database_url)
    for _ in range(5):
        try:
            with Session(engine, future=True) as session, session.begin():
                existing = _existing(session, prepared)
                if existing is not None:
                    return existing.reference, False
                if _reference_taken(session, prepared.reference):
                    # Astronomically rare; the person may already hold the old one, so log both.
                    old = prepared.reference
                    prepared = dataclasses.replace(prepared, reference=new_reference())
                    logger.warning("Reference %s was taken; disclosure stored as %s", old, prepared.reference)
                now = utcnow()
                disclosure = Disclosure(
                    reference=prepared.reference,
                    school=prepared.school,
                    audience=prepared.audience,
                    channel=prepared.channel,
                    sender_id=prepared.sender_id,
                    message_id=prepared.message_id,
                    text_encrypted=prepared.text_encrypted,
                    context_encrypted=prepared.context_encrypted,
                    categories=list(prepared.categories),
                    risk=prepared.risk,
                    status="new",
                    created_at=prepared.created_at,
                    updated_at=now,
                    source=source,
                )
                session.add(disclosure)
                session.flush()
                planned = add_outbox_rows(session, settings, disclosure.id, "alert", now)
                detail: dict[str, Any] = {
                    "source": source,
                    "categories": list(prepared.categories),
                    "risk": prepared.risk,
                    "text_chars": prepared.text_chars,
                    "alerts_queued": [f"{channel}:{recipient}" for channel, recipient in planned],
                    **(audit_detail or {}),
                }
                if prepared.text_truncated_from is not None:
                    detail["text_truncated_from_chars"] = prepared.text_truncated_from
                add_audit_event(
                    session,
                    disclosure_id=disclosure.id,
                    actor=SYSTEM_ACTOR,
                    action="created",
                    detail=detail,
                    at=now,
                )
            if not planned:
                logger.error(
                    "Disclosure %s is stored but NOBODY is being alerted yet: set SCHOOLGUIDE_DSL_EMAILS "
                    "and/or SCHOOLGUIDE_ALERT_WEBHOOK_URL (its alert waits in the outbox until then)",
                    prepared.reference,
                )
            return prepared.reference, True
        except IntegrityError:
            # Someone recorded the same message (or took the reference) between our check and our insert.
            continue
    raise RuntimeError(f"could not store disclosure {prepared.reference} after repeated conflicts")


# --- the spool ----------------------------------------------------------------------------------------------


def _spool_once(
    settings: Settings, record: dict[str, Any], same: Callable[[Mapping[str, Any]], bool]
) -> Mapping[str, Any]:
    """Append ``record`` to the spool (fsync'd) unless one that ``same`` matches is there already; returns
    the record the spool holds (that earlier one, if any)."""
    spool = Spool(settings.spool_dir)
    for existing in spool.records():
        if same(existing):
            return existing
    spool.append(record)
    return record


def spool_disclosure(settings: Settings, prepared: PreparedDisclosure) -> str:
    """Append to the spool (fsync'd) unless this message is already there; returns the reference to give."""
    spooled = _spool_once(
        settings,
        prepared.to_spool_record(),
        lambda record: (
            not _is_note_record(record)
            and record.get("sender_id") == prepared.sender_id
            and record.get("message_id") in prepared.message_keys
        ),
    )
    return str(spooled["reference"])


def record_disclosure(
    settings: Settings,
    *,
    school: Any,
    audience: Any,
    channel: Any,
    sender_id: Any,
    message_id: Any,
    text: Any,
    context: Any = None,
    categories: Any = None,
    risk: Any = None,
    source: str = "action",
    created_at: datetime | None = None,
    message_aliases: Any = (),
) -> RecordResult:
    """Store a disclosure durably before returning; never raises (see the module docstring).

    ``message_aliases``: legacy keys the same message may be recorded under already (turns.message_keys);
    a record under any of them is this one, never a second record.
    """
    try:
        prepared = prepare_disclosure(
            settings,
            school=school,
            audience=audience,
            channel=channel,
            sender_id=sender_id,
            message_id=message_id,
            text=text,
            context=context,
            categories=categories,
            risk=risk,
            source=source,
            created_at=created_at,
            message_aliases=message_aliases,
        )
    except Exception:
        # Only a malformed created_at/context could get here; record the message without them.
        logger.exception("Could not prepare a disclosure as given; recording it without context or timestamp")
        try:
            prepared = prepare_disclosure(
                settings,
                school=school,
                audience=audience,
                channel=channel,
                sender_id=sender_id,
                message_id=message_id,
                text=text,
                context=None,
                categories=categories,
                risk=risk,
                source=source,
                message_aliases=message_aliases,
            )
        except Exception:
            logger.critical(
                "DISCLOSURE NOT STORED: it could not even be prepared (sender_id=%r message_id=%r). "
                "Recover it from the Rasa tracker store (schoolguide disclosures reconcile).",
                sender_id,
                message_id,
                exc_info=True,
            )
            return RecordResult(reference=new_reference(), stored="log", created=False)

    stored, outcome = _write_durably(
        f"disclosure {prepared.reference}",
        to_database=(
            (lambda: store_in_database(settings, prepared, source=prepared.source))
            if prepared.text_encrypted is not None
            else None
        ),
        to_spool=lambda: spool_disclosure(settings, prepared),
        # The words are still in Rasa's tracker store, which the reconciler reads; these ids find them.
        lost=(
            "DISCLOSURE NOT STORED: database and spool both failed. reference=%s sender_id=%s message_id=%s "
            "school=%s risk=%s. Recover it from the Rasa tracker store (schoolguide disclosures reconcile).",
            prepared.reference,
            prepared.sender_id,
            prepared.message_id,
            prepared.school,
            prepared.risk,
        ),
    )
    if stored == "database":
        reference, created = outcome
        return RecordResult(reference=reference, stored="database", created=created)
    if stored == "spool":
        return RecordResult(reference=outcome, stored="spool", created=outcome == prepared.reference)
    return RecordResult(reference=prepared.reference, stored="log", created=False)


class Refused(Exception):
    """Not to be stored at all: ``_write_durably`` lets it through instead of spooling."""


class Postpone(Exception):
    """Not in the database yet, for an expected reason (logged as a warning): spool it."""


def _write_durably(
    what: str,
    *,
    to_database: Callable[[], T] | None,
    to_spool: Callable[[], Any],
    lost: tuple[Any, ...],
) -> tuple[Stored, Any]:
    """The one durable write for disclosures and notes: the database, else the spool, else a CRITICAL log
    line (``lost``: its format and arguments, never the words). Returns where it went and what that write
    returned; never raises, except ``Refused``.

    ``to_database`` is None when the record must not go there (it could not be encrypted).
    """
    if to_database is not None:
        try:
            return "database", to_database()
        except Refused:
            raise
        except Postpone as exc:
            logger.warning("Spooling %s until it can go to the database: %s", what, exc)
        except (OperationalError, DBInterfaceError, OSError) as exc:
            logger.error("Safeguarding database unavailable (%s); spooling %s", exc, what)
        except Exception:
            logger.exception("Could not store %s in the database; spooling it", what)
    try:
        return "spool", to_spool()
    except Refused:
        raise
    except Exception:
        logger.critical(*lost, exc_info=True)
        return "log", None


@dataclass(frozen=True)
class ReplayReport:
    replayed: int = 0
    already_recorded: int = 0
    remaining: int = 0
    notes_attached: int = 0
    notes_refused: int = 0  # spooled contact details whose disclosure was not their conversation's session's


def replay_spool(settings: Settings) -> ReplayReport:
    """Move spooled disclosures into the database, idempotently; stops early if the database is still down.

    Spooled contact notes follow, after every disclosure: a note whose disclosure is not in the database yet
    stays in the spool for the next pass.
    """
    spool = Spool(settings.spool_dir)
    records = spool.records()
    if not records:
        spool.compact()
        return ReplayReport()
    try:
        cipher: DisclosureCipher | None = load_cipher(settings)
    except Exception:
        logger.exception("No encryption key: spooled records that were stored unencrypted must wait")
        cipher = None
    replayed = already = attached = refused = 0
    database_down = False
    for record in [record for record in records if not _is_note_record(record)]:
        try:
            prepared = PreparedDisclosure.from_spool_record(record, cipher)
            reference, created = store_in_database(
                settings,
                prepared,
                source="spool",
                audit_detail={"original_source": prepared.source, "spooled_reference": prepared.reference},
            )
        except (OperationalError, DBInterfaceError, OSError) as exc:
            logger.warning(
                "Database still unavailable (%s); %d disclosure(s) stay spooled", exc, len(records)
            )
            database_down = True
            break
        except Exception:
            logger.exception(
                "Cannot replay spooled disclosure %s; it stays in the spool", record.get("reference")
            )
            continue
        # Marked only after the commit: a crash in between means a harmless, idempotent second replay.
        spool.mark_replayed(str(record["reference"]))
        if created:
            replayed += 1
            logger.info(
                "Replayed spooled disclosure %s into the database as %s", record["reference"], reference
            )
        else:
            already += 1
    for record in [] if database_down else [record for record in records if _is_note_record(record)]:
        try:
            note = PreparedNote.from_spool_record(record, cipher)
            store_note_in_database(settings, note, source="spool")
        except NoteTargetMissing as exc:
            logger.warning(
                "Spooled contact details %s wait for their disclosure: %s", record["reference"], exc
            )
            continue
        except NoteOutOfScope:
            # Not this conversation's or session's disclosure (logged by _refuse): dropped, never attached.
            spool.mark_replayed(str(record["reference"]))
            refused += 1
            continue
        except (OperationalError, DBInterfaceError, OSError) as exc:
            logger.warning("Database unavailable (%s); contact details stay spooled", exc)
            break
        except Exception:
            logger.exception(
                "Cannot replay spooled contact details %s; they stay in the spool", record["reference"]
            )
            continue
        spool.mark_replayed(str(record["reference"]))
        attached += 1
    remaining = spool.compact()
    return ReplayReport(
        replayed=replayed,
        already_recorded=already,
        remaining=remaining,
        notes_attached=attached,
        notes_refused=refused,
    )


# --- contact details added after a disclosure ---------------------------------------------------------------


class NoteTargetMissing(Postpone, LookupError):
    """The disclosure a note belongs to is not in the database (yet): it is still spooled, or unrecorded."""


class NoteOutOfScope(Refused):
    """The disclosure a note names is not one made in the note's conversation and session: never attached."""


@dataclass(frozen=True)
class NoteResult:
    """Where added contact details went. ``stored="log"`` means nowhere: logged at CRITICAL (the words are
    still in Rasa's tracker store). ``stored="refused"``: not stored, because the disclosure named is not one
    of this conversation's current session (``reference`` is then None: nothing to tell the person).
    ``reference`` is the disclosure they were attached to, when known."""

    stored: Stored | Literal["refused"]
    reference: str | None
    created: bool = True

    @property
    def kept(self) -> bool:
        return self.stored in ("database", "spool")


@dataclass(frozen=True)
class PreparedNote:
    """A note cleaned and encrypted, ready for the database or the spool."""

    spool_id: str  # the spool's key for this record ("reference" in the spool file); never shown to anyone
    kind: str
    # Which disclosure: its reference if the person was given one, else the Rasa message it came from.
    disclosure_reference: str | None
    disclosure_sender_id: str | None
    disclosure_message_id: str | None
    sender_id: str
    message_id: str
    created_at: datetime
    source: str
    text_chars: int
    audit_detail: dict[str, Any]
    text_encrypted: str | None  # None only when the key could not be loaded, and then only for the spool
    plaintext: str | None = None
    channel: str | None = None
    origin: str | None = None  # NOTE_ORIGINS: what asked for it
    # The keys of the user messages of the session the note was given in; None: not known (sender only).
    session_keys: tuple[str, ...] | None = None

    def to_spool_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record_type": NOTE_RECORD_TYPE,
            "format": SPOOL_FORMAT,
            "reference": self.spool_id,
            "kind": self.kind,
            "disclosure_reference": self.disclosure_reference,
            "disclosure_sender_id": self.disclosure_sender_id,
            "disclosure_message_id": self.disclosure_message_id,
            # Not "sender_id"/"message_id": this record is not a disclosure of that message.
            "note_sender_id": self.sender_id,
            "note_message_id": self.message_id,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "text_chars": self.text_chars,
            "audit_detail": self.audit_detail,
            "text_encrypted": self.text_encrypted,
            "channel": self.channel,
            "origin": self.origin,
            "session_keys": list(self.session_keys) if self.session_keys is not None else None,
        }
        if self.plaintext is not None:
            record["unencrypted_text"] = self.plaintext
        return record

    @classmethod
    def from_spool_record(cls, record: Mapping[str, Any], cipher: DisclosureCipher | None) -> PreparedNote:
        text_encrypted = record.get("text_encrypted")
        if text_encrypted is None:
            if cipher is None:
                raise ValueError("note was spooled unencrypted and no encryption key is available")
            text_encrypted = cipher.encrypt(str(record.get("unencrypted_text") or ""))
        detail = record.get("audit_detail")
        session_keys = record.get("session_keys")
        return cls(
            spool_id=str(record["reference"]),
            kind=str(record.get("kind") or "contact"),
            disclosure_reference=record.get("disclosure_reference"),
            disclosure_sender_id=record.get("disclosure_sender_id"),
            disclosure_message_id=record.get("disclosure_message_id"),
            sender_id=str(record.get("note_sender_id") or "unknown"),
            message_id=str(record.get("note_message_id") or record["reference"]),
            created_at=as_utc(datetime.fromisoformat(record["created_at"])),
            source=str(record.get("source") or "action"),
            text_chars=int(record.get("text_chars") or 0),
            audit_detail=dict(detail) if isinstance(detail, Mapping) else {},
            text_encrypted=text_encrypted,
            channel=record.get("channel"),
            origin=record.get("origin"),
            session_keys=tuple(str(key) for key in session_keys) if isinstance(session_keys, list) else None,
        )

    def out_of_scope(self, sender_id: Any, message_id: Any) -> str | None:
        """Why the disclosure of (``sender_id``, ``message_id``) is not this note's to attach to, or None.

        The same conversation: the disclosure's ``sender_id`` is the note's. The same session: the
        disclosure's message is one of the user messages of the session the note was given in
        (``session_keys``, read from Rasa's tracker, after its latest ``session_started``). Message keys
        rather than times: a disclosure recorded late (from the spool, or by the reconciler) keeps its
        message's key but not its time, and clocks need not agree; the slot that carries the reference
        over to a new session carries no message of that session.
        """
        if sender_id != self.sender_id:
            return "it belongs to another conversation"
        if self.session_keys is not None and message_id not in self.session_keys:
            return "it was made in an earlier session of this conversation"
        return None


def _is_note_record(record: Mapping[str, Any]) -> bool:
    return record.get("record_type") == NOTE_RECORD_TYPE


def _optional_key(value: Any) -> str | None:
    key = _key(value, 255, "")
    return key or None


def prepare_note(
    settings: Settings,
    *,
    disclosure_reference: Any,
    disclosure_sender_id: Any,
    disclosure_message_id: Any,
    sender_id: Any,
    message_id: Any,
    text: Any,
    kind: str = "contact",
    audit_detail: Mapping[str, Any] | None = None,
    source: str = "action",
    channel: Any = None,
    origin: Any = None,
    session_keys: Iterable[Any] | None = None,
) -> PreparedNote:
    """Clean the keys the same way ``prepare_disclosure`` does (so they match) and encrypt the words."""
    words = _as_text(text)[:MAX_TEXT_CHARS]
    reference = _label(disclosure_reference, 20, "").upper() or None
    origin_label = _label(origin, 30, "").lower()
    fields: dict[str, Any] = dict(
        spool_id=f"NOTE-{new_reference()}",
        kind=kind if kind in NOTE_KINDS else "contact",
        disclosure_reference=reference,
        disclosure_sender_id=_optional_key(disclosure_sender_id),
        disclosure_message_id=_optional_key(disclosure_message_id),
        sender_id=_key(sender_id, 255, "unknown"),
        message_id=_key(message_id, 255, "") or f"no-message-id:{new_reference()}",
        created_at=utcnow(),
        source=source if source in ("action", "spool") else "action",
        text_chars=len(words),
        audit_detail=dict(audit_detail or {}),
        channel=_label(channel, 64, "") or None,
        origin=origin_label if origin_label in NOTE_ORIGINS else None,
        session_keys=(
            None
            if session_keys is None
            else tuple(dict.fromkeys(k for k in (_key(v, 255, "") for v in session_keys) if k))
        ),
    )
    try:
        cipher = load_cipher(settings)
        return PreparedNote(**fields, text_encrypted=cipher.encrypt(words))
    except Exception:
        logger.critical(
            "Cannot encrypt contact details for disclosure %s: they will be spooled UNENCRYPTED (mode 0600) "
            "rather than lost. Fix SCHOOLGUIDE_ENCRYPTION_KEY, then run `schoolguide disclosures replay`.",
            reference,
            exc_info=True,
        )
        return PreparedNote(**fields, text_encrypted=None, plaintext=words)


def _note_target(session: Session, note: PreparedNote) -> Disclosure | None:
    if note.disclosure_reference:
        row = session.execute(
            select(Disclosure).where(Disclosure.reference == note.disclosure_reference)
        ).scalar_one_or_none()
        if row is not None:
            return row
    if note.disclosure_sender_id and note.disclosure_message_id:
        return session.execute(
            select(Disclosure).where(
                Disclosure.sender_id == note.disclosure_sender_id,
                Disclosure.message_id == note.disclosure_message_id,
            )
        ).scalar_one_or_none()
    return None


def _refuse(note: PreparedNote, reference: str | None, why: str) -> NoteOutOfScope:
    # The reference is logged (logs never carry words); the person is never told it.
    logger.warning(
        "Contact details from conversation %s (message %s) NOT attached to disclosure %s: %s",
        note.sender_id,
        note.message_id,
        reference,
        why,
    )
    return NoteOutOfScope(f"disclosure {reference}: {why}")


def store_note_in_database(settings: Settings, note: PreparedNote, *, source: str) -> tuple[str, bool]:
    """Commit the note, its "contact_added" audit event and one outbox row per DSL channel (kind
    ``contact:<note id>``: "contact details were added", never the details) together; returns (disclosure
    reference, created). A note already stored (a retried action, a second replay) queues nothing again.

    Raises ``NoteTargetMissing`` when the disclosure is not in the database, ``NoteOutOfScope`` when it is
    not one of the note's conversation and session (``PreparedNote.out_of_scope``), and on database failure.
    """
    if note.text_encrypted is None:
        raise ValueError("refusing to store unencrypted contact details in the database")
    engine = get_engine(settings.database_url)
    refused: tuple[str, str] | None = None
    for _ in range(3):
        try:
            with Session(engine, future=True) as session, session.begin():
                disclosure = _note_target(session, note)
                if disclosure is None:
                    raise NoteTargetMissing(
                        f"no disclosure {note.disclosure_reference or ''} "
                        f"(conversation {note.disclosure_sender_id}, message {note.disclosure_message_id}) "
                        "in the database"
                    )
                why = note.out_of_scope(disclosure.sender_id, disclosure.message_id)
                if why:
                    # The DSL sees that something was aimed at this record, never what: nothing is stored.
                    add_audit_event(
                        session,
                        disclosure_id=disclosure.id,
                        actor=SYSTEM_ACTOR,
                        action="contact_refused",
                        detail={"source": source, "why": why, "text_chars": note.text_chars},
                    )
                    refused = (disclosure.reference, why)
                    break
                existing = session.execute(
                    select(DisclosureNote.id).where(
                        DisclosureNote.disclosure_id == disclosure.id,
                        DisclosureNote.kind == note.kind,
                        DisclosureNote.sender_id == note.sender_id,
                        DisclosureNote.message_id == note.message_id,
                    )
                ).first()
                if existing is not None:
                    return disclosure.reference, False
                now = utcnow()
                row = DisclosureNote(
                    disclosure_id=disclosure.id,
                    kind=note.kind,
                    sender_id=note.sender_id,
                    message_id=note.message_id,
                    text_encrypted=note.text_encrypted,
                    created_at=note.created_at,
                    source=source,
                    channel=note.channel,
                    origin=note.origin,
                )
                session.add(row)
                session.flush()
                disclosure.updated_at = now
                # The DSL may have had the alert already: tell them (never the details) that there is more.
                planned = add_outbox_rows(session, settings, disclosure.id, contact_alert_kind(row.id), now)
                add_audit_event(
                    session,
                    disclosure_id=disclosure.id,
                    actor=SYSTEM_ACTOR,
                    action="contact_added",
                    # Never the details themselves: the audit trail is not encrypted.
                    detail={
                        "source": source,
                        "kind": note.kind,
                        "note_id": row.id,
                        "text_chars": note.text_chars,
                        "alerts_queued": [f"{channel}:{recipient}" for channel, recipient in planned],
                        **({"origin": note.origin} if note.origin else {}),
                        **note.audit_detail,
                    },
                    at=now,
                )
                return disclosure.reference, True
        except IntegrityError:
            continue  # the same note was added between our check and our insert: look again
    if refused is not None:
        raise _refuse(note, *refused)
    raise RuntimeError(f"could not store contact details for {note.disclosure_reference} after conflicts")


def spool_note(settings: Settings, note: PreparedNote) -> None:
    """Append the note to the spool (fsync'd) unless the same message's note is already there.

    A note whose disclosure waits in the spool is checked against it first (``NoteOutOfScope``); one whose
    disclosure is nowhere yet is checked when ``replay_spool`` attaches it.
    """
    for record in Spool(settings.spool_dir).records():
        if _is_note_record(record):
            continue
        named = bool(note.disclosure_reference) and record.get("reference") == note.disclosure_reference
        if named:
            why = note.out_of_scope(record.get("sender_id"), record.get("message_id"))
            if why:
                raise _refuse(note, note.disclosure_reference, why)
    _spool_once(
        settings,
        note.to_spool_record(),
        lambda record: (
            _is_note_record(record)
            and record.get("kind") == note.kind
            and record.get("note_sender_id") == note.sender_id
            and record.get("note_message_id") == note.message_id
        ),
    )


def attach_contact_details(
    settings: Settings,
    *,
    disclosure_reference: Any,
    disclosure_sender_id: Any,
    disclosure_message_id: Any,
    sender_id: Any,
    message_id: Any,
    text: Any,
    audit_detail: Mapping[str, Any] | None = None,
    channel: Any = None,
    origin: Any = None,
    session_keys: Iterable[Any] | None = None,
) -> NoteResult:
    """Attach contact details to a disclosure durably before returning; never raises.

    The disclosure is found by ``disclosure_reference``, else by the Rasa message it was recorded from. If it
    is not in the database (it went to the spool, or the database is down) the note is spooled and attached
    by ``replay_spool`` once its disclosure is there.

    Scope, checked here and not trusted to the caller: the disclosure must be one of conversation
    ``sender_id`` and, when ``session_keys`` is given (the actions always give it: the keys of the current
    session's user messages, ``turns.Conversation.session_keys``), made in that session. Otherwise nothing is
    stored (``stored="refused"``): a reference carried in a slot, typed, or left from an earlier session never
    lets one conversation add to another's record. A refusal is audited on the disclosure it named
    ("contact_refused": why, and how many characters; never the words). ``channel`` and ``origin``
    (``NOTE_ORIGINS``) say where the details came from, for ``schoolguide disclosures show``.
    """
    try:
        note = prepare_note(
            settings,
            disclosure_reference=disclosure_reference,
            disclosure_sender_id=disclosure_sender_id,
            disclosure_message_id=disclosure_message_id,
            sender_id=sender_id,
            message_id=message_id,
            text=text,
            audit_detail=audit_detail,
            channel=channel,
            origin=origin,
            session_keys=session_keys,
        )
    except Exception:
        logger.critical(
            "CONTACT DETAILS NOT STORED for disclosure %r (conversation %r, message %r): they could not be "
            "prepared. They are still in the Rasa tracker store.",
            disclosure_reference,
            sender_id,
            message_id,
            exc_info=True,
        )
        return NoteResult(stored="log", reference=None, created=False)

    try:
        stored, outcome = _write_durably(
            f"contact details for {note.disclosure_reference or 'a disclosure'}",
            to_database=(
                (lambda: store_note_in_database(settings, note, source=note.source))
                if note.text_encrypted is not None
                else None
            ),
            to_spool=lambda: spool_note(settings, note),
            lost=(
                "CONTACT DETAILS NOT STORED: database and spool both failed. disclosure=%s conversation=%s "
                "message=%s. They are still in the Rasa tracker store.",
                note.disclosure_reference,
                note.sender_id,
                note.message_id,
            ),
        )
    except NoteOutOfScope:
        return NoteResult(stored="refused", reference=None, created=False)
    if stored == "database":
        reference, created = outcome
        return NoteResult(stored="database", reference=reference, created=created)
    return NoteResult(stored=stored, reference=note.disclosure_reference, created=stored != "log")
