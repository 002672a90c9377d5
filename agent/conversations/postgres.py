"""Conversations in PostgreSQL, for several API processes sharing them (`conversations.url =
postgresql://...`).

Reads and writes use a small connection pool. A turn holds a session advisory lock on a connection of
its own: the other processes wait for it (up to api.turn_wait_s, then Conflict), and PostgreSQL
releases it when the holder's connection ends, so a process killed mid-turn never leaves its
conversation locked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.conversations.sql import SQLConversationStore
from agent.conversations.state import ConversationsConfig
from core.errors import Conflict, Unavailable

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK = 0x7265636167656E74  # 'recagent': one process at a time creates the tables


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise Unavailable("the PostgreSQL conversation store needs psycopg: pip install 'psycopg[binary,pool]'"
                          ) from exc
    return psycopg, psycopg_pool


def advisory_key(scope: str, conversation_id: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, from the scope and the id."""
    digest = hashlib.blake2b(f"{scope}\0{conversation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresConversationStore(SQLConversationStore):
    placeholder = "%s"

    def __init__(self, url: str, scope: str, config: ConversationsConfig) -> None:
        self._psycopg, pool_module = _import_psycopg()
        self.url = url
        info = self._psycopg.conninfo.conninfo_to_dict(url)
        where = f"postgresql://{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        self._errors: tuple[type[BaseException], ...] = (self._psycopg.Error, pool_module.PoolTimeout)
        self.pool = pool_module.ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False, timeout=30,
                                               kwargs={"connect_timeout": CONNECT_TIMEOUT_S})
        try:
            self._psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()  # fails fast, with the reason
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except self._errors as exc:
            self.pool.close()
            raise Unavailable(f"conversation store {where} cannot be reached: {exc}", retry_after_s=5) from None
        super().__init__(scope, config, where)

    def _create_schema(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))  # CREATE ... IF NOT EXISTS races
        super()._create_schema(cursor)

    def _unavailable(self, exc: BaseException) -> Unavailable:
        read_only = isinstance(exc, self._psycopg.errors.ReadOnlySqlTransaction)
        why = "is read-only" if read_only else "failed"
        return Unavailable(f"conversation store {self.where} {why} ({str(exc).strip()}); nothing was changed",
                           retry_after_s=5)

    @contextmanager
    def _write(self) -> Iterator[Any]:
        try:
            with self.pool.connection() as connection, connection.cursor() as cursor:
                yield cursor  # the pool's context commits, or rolls back on an error
        except self._errors as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def _lock(self, conversation_id: str, wait_s: float) -> Iterator[None]:
        try:
            connection = self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except self._errors as exc:
            raise self._unavailable(exc) from None
        try:
            try:
                connection.execute("SELECT set_config('lock_timeout', %s, false)", (f"{max(1, int(wait_s * 1000))}ms",))
                connection.execute("SELECT pg_advisory_lock(%s)", (advisory_key(self.scope, conversation_id),))
            except self._psycopg.errors.LockNotAvailable:
                raise Conflict(f"conversation {conversation_id!r} is busy with another turn; try again") from None
            except self._errors as exc:
                raise self._unavailable(exc) from None
            yield
        finally:
            connection.close()  # ends the session, which releases its advisory lock

    def close(self) -> None:
        self.pool.close()
