"""Conversation state and where it is kept.

`ConversationStore` keeps conversations in memory, optionally mirrored to a folder (one JSON file
each) so a restart loses none. `get` hands out a copy: a turn changes its copy and `save` makes the
change real, so a turn that fails midway leaves the stored conversation as it was.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.errors import ConversationNotFound


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
    include: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values asked for")
    exclude: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values ruled out")
    year_min: int | None = None
    year_max: int | None = None
    recommended: list[str] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)


class ConversationStore:
    """Conversations in memory, optionally mirrored to a folder (one JSON file each) to survive restarts."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._states: dict[str, ConversationState] = {}
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.json"):
                state = ConversationState.model_validate_json(path.read_text(encoding="utf-8"))
                self._states[state.id] = state

    def create(self, user: str | None = None) -> ConversationState:
        state = ConversationState(id=uuid.uuid4().hex, user=user)
        self.save(state)
        return state

    def get(self, conversation_id: str) -> ConversationState:
        with self._lock:
            state = self._states.get(conversation_id)
        if state is None:
            raise ConversationNotFound(conversation_id)
        return state.model_copy(deep=True)

    def save(self, state: ConversationState) -> None:
        with self._lock:
            if self.folder is not None:
                tmp = self.folder / f".{state.id}.tmp"
                tmp.write_text(state.model_dump_json(), encoding="utf-8")
                tmp.replace(self.folder / f"{state.id}.json")
            self._states[state.id] = state.model_copy(deep=True)

    def delete(self, conversation_id: str) -> None:
        with self._lock:
            if conversation_id not in self._states:
                raise ConversationNotFound(conversation_id)
            if self.folder is not None:
                (self.folder / f"{conversation_id}.json").unlink(missing_ok=True)
            del self._states[conversation_id]
