"""The local spool: where a disclosure goes when the database cannot take it.

An append-only JSON-lines file (``disclosures.jsonl``), one record per line, each write flushed and fsync'd
before ``append`` returns. Records hold the text already encrypted. Replay never edits that file in place:
replayed references are appended to ``replayed.txt`` after the database commit, and ``compact`` later rewrites
the spool without them (write-temp, fsync, rename) under a file lock. A crash at any point leaves either the
record still in the spool (replayed again, idempotently) or a committed row: never neither.

A line that cannot be parsed (a torn write after a power cut) is moved to ``corrupt.jsonl`` for a person to
look at, never dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SPOOL_FILE = "disclosures.jsonl"
REPLAYED_FILE = "replayed.txt"
CORRUPT_FILE = "corrupt.jsonl"
LOCK_FILE = "spool.lock"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_durably(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        # Start on a fresh line if an earlier write was torn, so this record stays parseable.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = "\n" + line
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Spool:
    """The spool directory (``settings.spool_dir``)."""

    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / SPOOL_FILE

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record and fsync it; when this returns the record survives a crash."""
        line = json.dumps(dict(record), ensure_ascii=True, default=str) + "\n"
        with self._locked():
            existed = self.path.exists()
            _append_durably(self.path, line)
            if not existed:
                _fsync_dir(self.directory)

    def _replayed(self) -> set[str]:
        try:
            lines = (self.directory / REPLAYED_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return set()
        return {line.strip() for line in lines if line.strip()}

    def _read_lines(self) -> list[str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [line for line in raw.decode("utf-8", "replace").split("\n") if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        """Spooled records not yet replayed, oldest first (unparseable lines are skipped and logged)."""
        replayed = self._replayed()
        pending = []
        for line in self._read_lines():
            record = _parse(line)
            if record is None:
                logger.error(
                    "Unreadable line in the safeguarding spool %s; compact will keep it aside", self.path
                )
                continue
            if record.get("reference") not in replayed:
                pending.append(record)
        return pending

    def mark_replayed(self, reference: str) -> None:
        """Note, durably, that ``reference`` is now committed in the database."""
        with self._locked():
            _append_durably(self.directory / REPLAYED_FILE, reference + "\n")

    def compact(self) -> int:
        """Drop replayed records from the spool; returns how many records remain."""
        if not self.path.exists():
            return 0
        with self._locked():
            replayed = self._replayed()
            keep: list[str] = []
            corrupt: list[str] = []
            for line in self._read_lines():
                record = _parse(line)
                if record is None:
                    corrupt.append(line)
                elif record.get("reference") not in replayed:
                    keep.append(line)
            for line in corrupt:
                _append_durably(self.directory / CORRUPT_FILE, line + "\n")
            if keep:
                temporary = self.directory / (SPOOL_FILE + ".tmp")
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, ("\n".join(keep) + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, self.path)
            else:
                self.path.unlink()
            _fsync_dir(self.directory)
            # Only now can the replayed markers go: the records they cover are no longer in the spool.
            (self.directory / REPLAYED_FILE).unlink(missing_ok=True)
            _fsync_dir(self.directory)
            return len(keep)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("reference"), str):
        return None
    return record
