"""Conversations in one SQLite file, the default store: WAL, a commit per write.

WAL with synchronous=NORMAL: a commit survives the process being killed (a killed process loses at most
the turn in progress); an OS crash or a power cut may lose the last commits, which FULL would keep at
about 25 times the cost per write (5,000 new conversations: 27 s against 1.0 s here).

Several processes on one machine may share the file. Turns of one conversation are serialised across
them by a byte-range lock in a side file (`<file>.locks`), which the kernel releases when a process
dies, so a killed process never leaves a conversation locked.

A damaged file is refused at start: opening runs `PRAGMA quick_check` and raises DataError naming the file
(the CLI prints it as one line and exits 2), rather than serving 503 "database disk image is malformed" with
Retry-After on every request as if the fault would pass. The file is left as it is, for a restore or
`sqlite3 FILE .recover`; moving it aside starts an empty store. Damage that appears later (a disk fault
while serving) is reported per request as a damaged store, 503.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sqlite3
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from agent.conversations.sql import SQLConversationStore
from agent.conversations.state import ConversationsConfig
from core.errors import Conflict, DataError, SettingsError, Unavailable

# Linux's open-file-description locks belong to an open file, not to the process: two stores in one
# process exclude each other too, and closing some other descriptor of the file releases nothing.
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # sqlite3 error names (and their extended forms) of a bad file


def _damaged(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(_DAMAGED)


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """What `PRAGMA quick_check` finds wrong with the open database (its first lines), None when it is sound.
    Other errors (a busy or unreadable file) propagate: they are not damage."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _damaged(exc):
            return str(exc)
        raise
    problems = [line.strip() for row in rows if row[0] != "ok" for line in str(row[0]).splitlines() if line.strip()]
    return "; ".join(problems[:4]) if problems else None


class ByteRangeLocks:
    """Exclusive locks by key across processes: one byte of a side file, at an offset hashed from the key
    (2**62 offsets, so two keys practically never share one). The kernel drops them when their holder
    dies. Threads sharing a store share its file, so agent.dialogue's in-process lock keeps them apart."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: BinaryIO | None = path.open("ab")  # closed with the store, or when it is collected
        except OSError:
            self._file = None  # a read-only folder: every write fails anyway, and says so

    def _set(self, offset: int, exclusive: bool) -> None:
        assert self._file is not None
        fd = self._file.fileno()
        if _OFD_SETLK is not None:
            kind = fcntl.F_WRLCK if exclusive else fcntl.F_UNLCK
            fcntl.fcntl(fd, _OFD_SETLK, struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0))
        else:  # POSIX record locks elsewhere: per process
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_UN, 1, offset)

    @contextmanager
    def hold(self, key: str, wait_s: float) -> Iterator[None]:
        if self._file is None:
            yield
            return
        offset = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") >> 2
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._set(offset, exclusive=True)
                break
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise Unavailable(f"cannot lock the conversation: {exc}") from None
                if time.monotonic() >= deadline:
                    raise Conflict(f"conversation {key.split(chr(0))[-1]!r} is busy with another turn; "
                                   f"try again") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            self._set(offset, exclusive=False)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SQLiteConversationStore(SQLConversationStore):
    """One connection shared by the process's threads (SQLite serialises writes anyway)."""

    def __init__(self, path: Path, scope: str, config: ConversationsConfig, read_only: bool = False) -> None:
        self.path = path
        self._guard = threading.RLock()
        where = f"sqlite:///{path}"
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            mode = "ro" if read_only else "rwc"
            self._conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode={mode}", uri=True,
                                         isolation_level=None, check_same_thread=False, timeout=10)
            problem = integrity_problem(self._conn)
            if problem is not None:
                self._conn.close()
                raise DataError(path, f"the conversation store is damaged (PRAGMA quick_check: {problem}); "
                                      f"recagent will not serve from it. Restore a copy, or recover what is left "
                                      f"(sqlite3 {path} .recover), or move it aside to start with no "
                                      f"conversations")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a killed process
            if not read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"conversation store {where} cannot be opened: {exc}") from None
        self._locks = ByteRangeLocks(path.with_name(path.name + ".locks"))
        super().__init__(scope, config, where)

    @classmethod
    def from_url(cls, url: str, scope: str, config: ConversationsConfig) -> SQLiteConversationStore:
        """sqlite:///relative/path or sqlite:////absolute/path, optionally ?mode=ro."""
        rest = url.split(":", 1)[1]
        if not rest.startswith("///") or len(rest) == 3:
            raise SettingsError(f"conversations.url {url!r}: use sqlite:///relative/path or sqlite:////absolute/path")
        path, _, query = rest[3:].partition("?")
        options = dict(urllib.parse.parse_qsl(query))
        if set(options) - {"mode"} or options.get("mode", "rw") not in ("ro", "rw"):
            raise SettingsError(f"conversations.url {url!r}: the only option is mode=ro or mode=rw")
        return cls(Path(urllib.parse.unquote(path)), scope, config, read_only=options.get("mode") == "ro")

    def _unavailable(self, exc: sqlite3.Error) -> Unavailable:
        name = getattr(exc, "sqlite_errorname", "")
        why = ("is read-only" if "READONLY" in name else "is busy (locked by another process)"
               if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) else "is full" if "FULL" in name
               else "is damaged (restore it or move it aside, then restart)" if _damaged(exc) else "failed")
        return Unavailable(f"conversation store {self.where} {why} ({exc}); nothing was changed",
                           retry_after_s=5)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._guard:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None
            try:
                yield self._conn.cursor()
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._unavailable(exc) from None
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        with self._guard:
            try:
                yield self._conn.cursor()
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None

    @contextmanager
    def _lock(self, conversation_id: str, wait_s: float) -> Iterator[None]:
        with self._locks.hold(f"{self.scope}\0{conversation_id}", wait_s):
            yield

    def close(self) -> None:
        with self._guard:
            self._conn.close()
            self._locks.close()
