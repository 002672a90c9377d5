"""Conversation state, the settings section `conversations`, and the interface every store provides."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    items: list[str] = Field(default_factory=list)


class ConversationState(BaseModel):
    id: str
    user: str | None = None
    liked: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    mentioned: list[str] = Field(default_factory=list)
    include: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values asked for (all)")
    include_any: dict[str, list[str]] = Field(default_factory=dict,
                                              description="attribute -> values of which an item has one")
    exclude: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values ruled out")
    year_min: int | None = None
    year_max: int | None = None
    query: str | None = Field(None, description="the latest message's text to search by meaning")
    recommended: list[str] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)


class ConversationsConfig(BaseModel):
    """Where conversations live and how many of them, for how long (settings section `conversations`)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("sqlite:///var/conversations.sqlite3",
                     description="sqlite:///relative/path, sqlite:////absolute/path (add ?mode=ro for a "
                                 "read-only copy) or postgresql://user@host:port/db (password from "
                                 "PGPASSWORD or ~/.pgpass, so it never shows in settings or argv)")
    max_turns: int = Field(200, ge=2, description="messages kept in a conversation's transcript; older ones "
                                                  "are dropped (likes, dislikes and constraints are kept)")
    max_conversations: int = Field(100_000, ge=1, description="conversations per dataset; past it the least "
                                                              "recently used are deleted")
    ttl_s: float = Field(7 * 86400.0, gt=0, description="a conversation unused this long is gone")


class ConversationStore(Protocol):
    """Where conversations are kept. Errors: ConversationNotFound (also for an expired or evicted one),
    CorruptConversation (an unreadable row, moved to quarantine), Unavailable (the database is down or
    read-only; nothing was changed), Conflict (`hold` waited too long)."""

    def create(self, user: str | None = None) -> ConversationState: ...

    def get(self, conversation_id: str) -> ConversationState: ...

    def save(self, state: ConversationState) -> None: ...

    def delete(self, conversation_id: str) -> None: ...

    def hold(self, conversation_id: str, wait_s: float) -> AbstractContextManager[None]:
        """Exclusive use of one conversation across processes (a turn, feedback, a delete), marked as used."""
        ...

    def evict(self) -> int:
        """Delete expired conversations and the least recently used past the limit; returns how many."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...
