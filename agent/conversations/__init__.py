"""Where conversations are kept, behind one small interface (`ConversationStore`).

A store hands out copies (`get`): a turn changes its copy and `save` makes the change real, so a turn
that fails midway leaves the stored conversation as it was. `hold` serialises the turns of one
conversation across processes. Two implementations share the SQL in `sql.py`: SQLite (one file, the
default; `sqlite.py`) and PostgreSQL (several API processes; `postgres.py`), chosen by the scheme of
`conversations.url`. The state and the settings live in `state.py`, which imports no store.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.conversations.state import ConversationsConfig, ConversationState, ConversationStore, Turn
from core.errors import SettingsError

__all__ = ["ConversationState", "ConversationStore", "ConversationsConfig", "Turn", "open_conversation_store"]


def _open_sqlite(url: str, scope: str, config: ConversationsConfig) -> ConversationStore:
    from agent.conversations.sqlite import SQLiteConversationStore

    return SQLiteConversationStore.from_url(url, scope, config)


def _open_postgres(url: str, scope: str, config: ConversationsConfig) -> ConversationStore:
    from agent.conversations.postgres import PostgresConversationStore  # needs psycopg, so only when asked

    return PostgresConversationStore(url, scope, config)


OPENERS: dict[str, Callable[[str, str, ConversationsConfig], ConversationStore]] = {
    "sqlite": _open_sqlite, "postgresql": _open_postgres, "postgres": _open_postgres}


def open_conversation_store(config: ConversationsConfig, scope: str) -> ConversationStore:
    """The store `config.url` names; `scope` (the dataset's namespace) keeps each catalog's conversations apart."""
    scheme = config.url.split(":", 1)[0].lower()
    if scheme not in OPENERS:
        raise SettingsError(f"conversations.url: unknown scheme {scheme!r} (use {', '.join(OPENERS)})")
    return OPENERS[scheme](config.url, scope, config)
