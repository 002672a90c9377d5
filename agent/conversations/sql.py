"""The SQL both conversation stores run (SQLite and PostgreSQL accept the same statements).

One row per conversation: its state as JSON text and when it was last used. A row that no longer
parses is moved to `quarantined_conversations` with a warning naming it, never a crash. Writes run in
one transaction each, so a failed write (a read-only or unreachable database) changes nothing.
Subclasses supply the transactions, the cross-process lock and the error translation.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn

from pydantic import ValidationError

from agent.conversations.state import ConversationsConfig, ConversationState
from core.errors import ConversationNotFound, CorruptConversation, Unavailable

log = logging.getLogger("recagent.store")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS conversations (scope TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, used_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, id))",
    "CREATE INDEX IF NOT EXISTS conversations_used ON conversations (scope, used_at)",
    "CREATE TABLE IF NOT EXISTS quarantined_conversations (scope TEXT NOT NULL, id TEXT NOT NULL, "
    "state TEXT NOT NULL, reason TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
)


Cursor = Any  # a DB-API cursor: sqlite3's or psycopg's (execute, fetchone, fetchall, rowcount)


class SQLConversationStore:
    """Conversations of one scope (a dataset) in a SQL table; see agent.conversations.ConversationStore."""

    placeholder = "?"

    def __init__(self, scope: str, config: ConversationsConfig, where: str) -> None:
        self.scope = scope
        self.config = config
        self.where = where  # the store as people should see it in messages (never a password)
        self._creates = 0
        with self._write() as cursor:
            self._create_schema(cursor)

    # what subclasses provide ---------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction, committed at the end or rolled back on any error."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._write()

    def _lock(self, conversation_id: str, wait_s: float) -> AbstractContextManager[None]:
        """Exclusive across processes; Conflict past `wait_s`."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _create_schema(self, cursor: Cursor) -> None:
        for statement in SCHEMA:
            cursor.execute(statement)

    # the store -------------------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    def _fresh_after(self) -> float:
        return time.time() - self.config.ttl_s

    def create(self, user: str | None = None) -> ConversationState:
        state = ConversationState(id=uuid.uuid4().hex, user=user)
        now = time.time()
        with self._write() as cursor:
            cursor.execute(self._sql("INSERT INTO conversations (scope, id, state, created_at, used_at) "
                                     "VALUES (?, ?, ?, ?, ?)"), (self.scope, state.id, state.model_dump_json(),
                                                                 now, now))
        self._creates += 1
        if self._creates % max(1, self.config.max_conversations // 100) == 0:
            self.evict()
        return state

    def get(self, conversation_id: str) -> ConversationState:
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT state FROM conversations WHERE scope = ? AND id = ? AND used_at >= ?"),
                           (self.scope, conversation_id, self._fresh_after()))
            row = cursor.fetchone()
        if row is None:
            raise ConversationNotFound(conversation_id)
        try:
            state = ConversationState.model_validate_json(row[0])
        except ValidationError as exc:
            self._quarantine(conversation_id, row[0], _first_problem(exc))
        if state.id != conversation_id:
            self._quarantine(conversation_id, row[0], f"the row holds conversation {state.id!r}")
        return state

    def save(self, state: ConversationState) -> None:
        del state.turns[:-self.config.max_turns]
        with self._write() as cursor:
            cursor.execute(self._sql("UPDATE conversations SET state = ?, used_at = ? WHERE scope = ? AND id = ?"),
                           (state.model_dump_json(), time.time(), self.scope, state.id))
            if cursor.rowcount == 0:
                raise ConversationNotFound(state.id)  # deleted or evicted while the turn ran

    def delete(self, conversation_id: str) -> None:
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM conversations WHERE scope = ? AND id = ?"),
                           (self.scope, conversation_id))
            if cursor.rowcount == 0:
                raise ConversationNotFound(conversation_id)

    @contextmanager
    def hold(self, conversation_id: str, wait_s: float) -> Iterator[None]:
        with self._lock(conversation_id, wait_s):
            self._touch(conversation_id)  # a write: a read-only store says so before the turn runs
            yield

    def _touch(self, conversation_id: str) -> None:
        with self._write() as cursor:
            cursor.execute(self._sql("UPDATE conversations SET used_at = ? WHERE scope = ? AND id = ? "
                                     "AND used_at >= ?"),
                           (time.time(), self.scope, conversation_id, self._fresh_after()))
            if cursor.rowcount == 0:
                raise ConversationNotFound(conversation_id)

    def evict(self) -> int:
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM conversations WHERE scope = ? AND used_at < ?"),
                           (self.scope, self._fresh_after()))
            expired = max(cursor.rowcount, 0)
            cursor.execute(self._sql("SELECT used_at FROM conversations WHERE scope = ? "
                                     "ORDER BY used_at DESC LIMIT 1 OFFSET ?"),
                           (self.scope, self.config.max_conversations - 1))
            row = cursor.fetchone()
            overflow = 0
            if row is not None:  # the limit-th most recent; everything older goes
                cursor.execute(self._sql("DELETE FROM conversations WHERE scope = ? AND used_at < ?"),
                               (self.scope, row[0]))
                overflow = max(cursor.rowcount, 0)
        return expired + overflow

    def count(self) -> int:
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT count(*) FROM conversations WHERE scope = ? AND used_at >= ?"),
                           (self.scope, self._fresh_after()))
            return int(cursor.fetchone()[0])

    def quarantined(self) -> list[tuple[str, str]]:
        """(id, reason) of the rows set aside in this scope."""
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT id, reason FROM quarantined_conversations WHERE scope = ? ORDER BY at"),
                           (self.scope,))
            return [(str(r[0]), str(r[1])) for r in cursor.fetchall()]

    def _quarantine(self, conversation_id: str, text: str, reason: str) -> NoReturn:
        """Move an unreadable row aside (kept for inspection), warn naming it, and raise CorruptConversation."""
        try:
            with self._write() as cursor:
                cursor.execute(self._sql("INSERT INTO quarantined_conversations (scope, id, state, reason, at) "
                                         "VALUES (?, ?, ?, ?, ?)"),
                               (self.scope, conversation_id, text, reason, time.time()))
                cursor.execute(self._sql("DELETE FROM conversations WHERE scope = ? AND id = ?"),
                               (self.scope, conversation_id))
            log.warning("conversation %s in %s (%s) is unreadable (%s); moved to quarantined_conversations",
                        conversation_id, self.where, self.scope, reason)
        except Unavailable as exc:
            log.warning("conversation %s in %s (%s) is unreadable (%s) and could not be moved aside: %s",
                        conversation_id, self.where, self.scope, reason, exc)
        raise CorruptConversation(conversation_id, reason)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where + ': ' if where else ''}{error['msg']}"
