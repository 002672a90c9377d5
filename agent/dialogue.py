"""A conversation with the recommender: typed state per conversation, updated turn by turn.

A turn reads the message, updates the state (liked/disliked items, genre and year constraints, titles
the user mentions resolved to catalog items), retrieves with the message, the state and the user's
history, reranks, and answers with grounded recommendations. Feedback on an item (like, dislike, seen)
updates the state; a disliked or seen item never comes back in that conversation.
"""

from __future__ import annotations

import difflib
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.recommender import Recommender
from agent.respond import RecommendationResponse
from index.errors import RecagentError

Feedback = Literal["like", "dislike", "seen"]

# Everyday words for genres, beyond the genre names themselves.
GENRE_WORDS = {"scary": "Horror", "horror": "Horror", "funny": "Comedy", "comedy": "Comedy", "comedies": "Comedy",
               "romantic": "Romance", "romance": "Romance", "animated": "Animation", "cartoon": "Animation",
               "kids": "Children", "children": "Children", "family": "Children", "sci-fi": "Sci-Fi",
               "science fiction": "Sci-Fi", "space": "Sci-Fi", "thriller": "Thriller", "documentary": "Documentary",
               "war": "War", "western": "Western", "musical": "Musical", "crime": "Crime", "mystery": "Mystery",
               "fantasy": "Fantasy", "action": "Action", "adventure": "Adventure", "drama": "Drama",
               "noir": "Film-Noir"}
_NEGATION = re.compile(r"\b(no|not|nothing|without|avoid|hate|don't want|dont want|except)\b[^.,;!?]{0,30}$",
                       re.IGNORECASE)
_DECADE = re.compile(r"\b(?:from the |in the )?(?:19)?([2-9]0)'?s\b", re.IGNORECASE)
_AFTER = re.compile(r"\b(?:after|since|newer than|from)\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_BEFORE = re.compile(r"\b(?:before|older than|until)\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_LIKED = re.compile(r"\b(?:i (?:loved|liked|enjoyed|adore)|loved|liked)\s+(.+?)(?:[.!?;]|$| but )",
                    re.IGNORECASE)
_DISLIKED = re.compile(r"\b(?:i (?:hated|disliked|didn't like|did not like)|hated)\s+(.+?)(?:[.!?;]|$| but )",
                       re.IGNORECASE)
_LIST_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+", re.IGNORECASE)


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
    include_genres: list[str] = Field(default_factory=list)
    exclude_genres: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    recommended: list[str] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)

    def filters(self) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        genre: dict[str, Any] = {}
        if self.include_genres:
            genre["$in"] = self.include_genres
        if self.exclude_genres:
            genre["$nin"] = self.exclude_genres
        if genre:
            filters["genres"] = genre
        year: dict[str, int] = {}
        if self.year_min is not None:
            year["$gte"] = self.year_min
        if self.year_max is not None:
            year["$lte"] = self.year_max
        if year:
            filters["year"] = year
        return filters


class ConversationNotFound(RecagentError):
    pass


def _genre_mentions(text: str) -> tuple[list[str], list[str]]:
    include: list[str] = []
    exclude: list[str] = []
    lowered = text.lower()
    for word, genre in GENRE_WORDS.items():
        for match in re.finditer(rf"\b{re.escape(word)}\b", lowered):
            target = exclude if _NEGATION.search(lowered[: match.start()]) else include
            if genre not in target:
                target.append(genre)
    return [g for g in include if g not in exclude], exclude


class TitleResolver:
    """Finds catalog items in free text: exact title words first, then fuzzy, then the embedding."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.by_key: dict[str, str] = {}
        for item_id, entry in recommender.index.entries.items():
            key = _title_key(entry.title)
            if len(key) >= 3:
                self.by_key.setdefault(key, item_id)  # the first (lowest id) wins for remakes

    def resolve(self, phrase: str) -> str | None:
        key = _title_key(phrase)
        if not key:
            return None
        if key in self.by_key:
            return self.by_key[key]
        close = difflib.get_close_matches(key, list(self.by_key), n=1, cutoff=0.85)
        if close:
            return self.by_key[close[0]]
        found = self.recommender.candidates(query=phrase, k=1, ranker="text", exclude_seen=False)
        if found and found[0].score >= 0.75:
            return found[0].id
        return None

    def mentioned(self, text: str) -> list[str]:
        """Catalog titles written in the text. A title must start with a capital letter where it is
        written, so everyday words that are also titles ("nothing", "up") are not taken for movies."""
        lowered = f" {_title_key(text)} "
        hits = []
        for key, item_id in self.by_key.items():
            if len(key) < 4 or f" {key} " not in lowered:
                continue
            words = r"\W+".join(re.escape(w) for w in key.split())
            match = re.search(rf"\b{words}\b", text, re.IGNORECASE)
            if match and match.group(0)[0].isupper():
                hits.append(item_id)
        return list(dict.fromkeys(hits))


def _title_key(title: str) -> str:
    title = re.sub(r"\(\d{4}\)\s*$", "", title).strip()
    title = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title)  # "Matrix, The" -> "The Matrix"
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


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
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        return state

    def save(self, state: ConversationState) -> None:
        with self._lock:
            self._states[state.id] = state
            if self.folder is not None:
                tmp = self.folder / f".{state.id}.tmp"
                tmp.write_text(state.model_dump_json(), encoding="utf-8")
                tmp.replace(self.folder / f"{state.id}.json")

    def delete(self, conversation_id: str) -> None:
        with self._lock:
            if self._states.pop(conversation_id, None) is None:
                raise ConversationNotFound(f"no conversation {conversation_id!r}")
            if self.folder is not None:
                (self.folder / f"{conversation_id}.json").unlink(missing_ok=True)


class ConversationAgent:
    """Runs turns over a Recommender and a ConversationStore."""

    def __init__(self, recommender: Recommender, store: ConversationStore | None = None, k: int = 5) -> None:
        self.recommender = recommender
        self.store = store or ConversationStore()
        self.resolver = TitleResolver(recommender)
        self.k = k

    def update_state(self, state: ConversationState, message: str) -> None:
        include, exclude = _genre_mentions(message)
        for genre in include:
            if genre not in state.include_genres:
                state.include_genres.append(genre)
            if genre in state.exclude_genres:
                state.exclude_genres.remove(genre)
        for genre in exclude:
            if genre not in state.exclude_genres:
                state.exclude_genres.append(genre)
            if genre in state.include_genres:
                state.include_genres.remove(genre)
        decade = _DECADE.search(message)
        if decade:
            start = int(decade.group(1))
            start += 1900 if start >= 30 else 2000
            state.year_min, state.year_max = start, start + 9
        if (after := _AFTER.search(message)) is not None:
            state.year_min = int(after.group(1))
        if (before := _BEFORE.search(message)) is not None:
            state.year_max = int(before.group(1))
        for pattern, bucket in ((_LIKED, state.liked), (_DISLIKED, state.disliked)):
            for match in pattern.finditer(message):
                for phrase in _LIST_SPLIT.split(match.group(1)):
                    item = self.resolver.resolve(phrase)
                    if item and item not in bucket:
                        bucket.append(item)
        for item in self.resolver.mentioned(message):
            if item not in state.mentioned and item not in state.disliked:
                state.mentioned.append(item)

    def feedback(self, conversation_id: str, item_id: str, kind: Feedback) -> ConversationState:
        state = self.store.get(conversation_id)
        if item_id not in self.recommender.index.entries:
            raise RecagentError(f"unknown item {item_id!r}")
        bucket = {"like": state.liked, "dislike": state.disliked, "seen": state.seen}[kind]
        if item_id not in bucket:
            bucket.append(item_id)
        if kind == "dislike" and item_id in state.liked:
            state.liked.remove(item_id)
        self.store.save(state)
        return state

    def respond(self, conversation_id: str, message: str) -> RecommendationResponse:
        events = self.stream(conversation_id, message, stream=False)
        return next(e["response"] for e in events if e["type"] == "done")

    def stream(self, conversation_id: str, message: str, stream: bool = True) -> Iterator[dict[str, Any]]:
        """One turn as events for a UI or SSE: 'items', then 'delta' pieces of the grounded reply as they
        are written, then 'done' (with 'reply' and, internally, the whole 'response')."""
        state = self.store.get(conversation_id)
        state.turns.append(Turn(role="user", text=message))
        self.update_state(state, message)
        history = [*state.liked, *[m for m in state.mentioned if m not in state.liked]]
        exclude = [*state.disliked, *state.seen, *state.mentioned]
        for event in self.recommender.recommend_events(user=state.user, history=history or None, query=message,
                                                       k=self.k, filters=state.filters() or None,
                                                       exclude=exclude, stream=stream):
            if event["type"] == "items":
                yield {**event, "items": [i.model_dump() for i in event["items"]]}
            elif event["type"] == "delta":
                yield event
            else:
                response: RecommendationResponse = event["response"]
                state.recommended.extend(i.id for i in response.items if i.id not in state.recommended)
                state.turns.append(Turn(role="assistant", text=response.reply, items=[i.id for i in response.items]))
                self.store.save(state)
                yield {"type": "done", "reply": response.reply, "fallback": response.fallback,
                       "fallback_reason": response.fallback_reason, "timings": response.timings,
                       "response": response}
