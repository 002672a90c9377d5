"""A conversation with the recommender: typed state per conversation, updated turn by turn.

A turn reads the message and updates the state: liked and disliked items ("I loved X", "I hated Y"),
titles the user writes (resolved to catalog items), constraints on the catalog's own attributes
(agent.understanding) and years. It then runs the turn pipeline with that state and the user's stored
history, and saves the finished turn before its last event is sent. Turns of one conversation run one
at a time, also across processes sharing the store; a message that finds its conversation busy for too
long gets Conflict. Feedback (like,
dislike, seen) updates the state; a disliked or seen item never comes back in that conversation.
"""

from __future__ import annotations

import difflib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from agent.conversations import ConversationState, ConversationStore, Turn
from agent.events import DeltaEvent, DoneEvent, ItemsEvent, RecommendationResponse, TurnRequest
from agent.linear_ranker import warm_linear
from agent.recommender import Recommender
from agent.turn import TurnPipeline
from agent.understanding import CatalogVocabulary
from core.errors import Conflict, UnknownItem

Feedback = Literal["like", "dislike", "seen"]

_LIKED = re.compile(r"\b(?:i (?:loved|liked|enjoyed|adore)|loved|liked)\s+(.+?)(?:[.!?;]|$| but )",
                    re.IGNORECASE)
_DISLIKED = re.compile(r"\b(?:i (?:hated|disliked|didn't like|did not like)|hated)\s+(.+?)(?:[.!?;]|$| but )",
                       re.IGNORECASE)
_LIST_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+", re.IGNORECASE)


def title_key(title: str) -> str:
    title = re.sub(r"\(\d{4}\)\s*$", "", title).strip()
    title = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title)  # "Matrix, The" -> "The Matrix"
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


class TitleResolver:
    """Finds catalog items in free text: exact title words first, then fuzzy, then the embedding."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.by_key: dict[str, str] = {}
        for item_id, entry in recommender.index.entries.items():
            k = title_key(entry.title)
            if len(k) >= 3:
                self.by_key.setdefault(k, item_id)  # the first (lowest id) wins for remakes

    def resolve(self, phrase: str) -> str | None:
        k = title_key(phrase)
        if not k:
            return None
        if k in self.by_key:
            return self.by_key[k]
        close = difflib.get_close_matches(k, list(self.by_key), n=1, cutoff=0.85)
        if close:
            return self.by_key[close[0]]
        found = self.recommender.candidates(query=phrase, k=1, ranker="text", exclude_seen=False)
        if found and found[0].score >= 0.75:
            return found[0].id
        return None

    def mentioned(self, text: str) -> list[tuple[str, str]]:
        """(item id, the words as written) for catalog titles in the text. A title must start with a
        capital letter where it is written, so everyday words that are also titles ("nothing", "up")
        are not taken for items."""
        lowered = f" {title_key(text)} "
        hits = []
        for k, item_id in self.by_key.items():
            if len(k) < 4 or f" {k} " not in lowered:
                continue
            words = r"\W+".join(re.escape(w) for w in k.split())
            match = re.search(rf"\b{words}\b", text, re.IGNORECASE)
            if match and match.group(0)[0].isupper():
                hits.append((item_id, match.group(0)))
        return list({item_id: (item_id, span) for item_id, span in hits}.values())


class ConversationAgent:
    """Runs turns over a TurnPipeline and a ConversationStore."""

    def __init__(self, pipeline: TurnPipeline, store: ConversationStore,
                 vocabulary: CatalogVocabulary | None = None, k: int = 5, turn_wait_s: float = 30.0) -> None:
        self.pipeline = pipeline
        self.store = store
        self.vocabulary = vocabulary or CatalogVocabulary(pipeline.index, pipeline.recommender.context.encoder)
        self.resolver = TitleResolver(pipeline.recommender)
        self.k = k
        self.turn_wait_s = turn_wait_s
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # the lock and how many hold or wait for it
        self._locks_guard = threading.Lock()

    @property
    def recommender(self) -> Recommender:
        return self.pipeline.recommender

    def warm(self) -> None:
        """Load what the first turns would otherwise load on the way (the encoder, the catalog's text
        vectors, the constraint values' embeddings, what the linear ranker's weights read), so that no user's
        turn pays for it."""
        self.pipeline.index.warm()
        warm_linear(self.recommender.context)
        encoder = self.recommender.context.encoder
        if encoder is not None:
            encoder.encode_query("warm up")
        self.vocabulary.warm()

    # conversations -----------------------------------------------------------------------------

    def create(self, user: str | None = None) -> ConversationState:
        if user is not None:
            self.pipeline.index.user_history(user)  # UnknownUser now, not at the first turn
        return self.store.create(user=user)

    def delete(self, conversation_id: str) -> None:
        with self.turn_lock(conversation_id):
            self.store.delete(conversation_id)

    @contextmanager
    def turn_lock(self, conversation_id: str) -> Iterator[None]:
        """One turn at a time per conversation: in this process (a lock that lives while someone holds or
        waits for it) and across processes (the store's hold); Conflict after api.turn_wait_s."""
        deadline = time.monotonic() + self.turn_wait_s
        with self._locks_guard:
            lock, users = self._locks.get(conversation_id, (threading.Lock(), 0))
            self._locks[conversation_id] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=self.turn_wait_s):
                raise Conflict(f"conversation {conversation_id!r} is busy with another turn; try again")
            try:
                with self.store.hold(conversation_id, max(0.0, deadline - time.monotonic())):
                    yield
            finally:
                lock.release()
        finally:
            with self._locks_guard:
                lock, users = self._locks[conversation_id]
                if users == 1:
                    del self._locks[conversation_id]
                else:
                    self._locks[conversation_id] = (lock, users - 1)

    # understanding -----------------------------------------------------------------------------

    def update_state(self, state: ConversationState, message: str) -> None:
        masked: list[str] = []
        for pattern, bucket in ((_LIKED, state.liked), (_DISLIKED, state.disliked)):
            for match in pattern.finditer(message):
                masked.append(match.group(1))
                for phrase in _LIST_SPLIT.split(match.group(1)):
                    item = self.resolver.resolve(phrase)
                    if item and item not in bucket:
                        bucket.append(item)
        for item, span in self.resolver.mentioned(message):
            masked.append(span)
            if item not in state.mentioned and item not in state.disliked:
                state.mentioned.append(item)
        for constraint in self.vocabulary.constraints(message, masked):
            add, drop = (state.exclude, state.include) if constraint.negated else (state.include, state.exclude)
            values = add.setdefault(constraint.attribute, [])
            if constraint.value not in values:
                values.append(constraint.value)
            if constraint.value in drop.get(constraint.attribute, []):
                drop[constraint.attribute].remove(constraint.value)
                if not drop[constraint.attribute]:
                    del drop[constraint.attribute]
        low, high = self.vocabulary.years(message)
        if low is not None:
            state.year_min = low
        if high is not None:
            state.year_max = high

    def filters(self, state: ConversationState) -> dict[str, object]:
        """The state's constraints as a retrieval filter; each value stands for its family of values."""
        filters: dict[str, object] = {}
        for attribute in sorted(set(state.include) | set(state.exclude)):
            condition: dict[str, list[str]] = {}
            if state.include.get(attribute):
                condition["$in"] = sorted({v for value in state.include[attribute]
                                           for v in self.vocabulary.family(attribute, value)})
            if state.exclude.get(attribute):
                condition["$nin"] = sorted({v for value in state.exclude[attribute]
                                            for v in self.vocabulary.family(attribute, value)})
            filters[attribute] = condition
        year = self.vocabulary.year_attribute
        if year is not None and (state.year_min is not None or state.year_max is not None):
            bounds: dict[str, int] = {}
            if state.year_min is not None:
                bounds["$gte"] = state.year_min
            if state.year_max is not None:
                bounds["$lte"] = state.year_max
            filters[year] = bounds
        return filters

    def feedback(self, conversation_id: str, item_id: str, kind: Feedback) -> ConversationState:
        if item_id not in self.pipeline.index.entries:
            raise UnknownItem(item_id)
        with self.turn_lock(conversation_id):
            state = self.store.get(conversation_id)
            bucket = {"like": state.liked, "dislike": state.disliked, "seen": state.seen}[kind]
            if item_id not in bucket:
                bucket.append(item_id)
            if kind == "dislike" and item_id in state.liked:
                state.liked.remove(item_id)
            self.store.save(state)
        return state

    # turns -------------------------------------------------------------------------------------

    def read_message(self, state: ConversationState, message: str) -> None:
        """A user message joins the conversation and updates its state."""
        state.turns.append(Turn(role="user", text=message))
        self.update_state(state, message)

    def request(self, state: ConversationState, message: str | None, k: int | None = None) -> TurnRequest:
        """What a turn retrieves for: the items recommended so far, then the liked and mentioned ones, as the
        history (the most recent last, so the user's own weigh most; history items are not recommended
        again), the message as the query, the state's constraints as filters, and disliked, seen and
        mentioned items left out. Taking earlier recommendations as context lifted recall@10 on ReDial's
        validation dialogues (README, Evaluation)."""
        context = dict.fromkeys([*state.recommended, *state.liked, *state.mentioned])
        history = [i for i in context if i not in state.disliked and i not in state.seen]
        exclude = [*state.disliked, *state.seen, *state.mentioned]
        return TurnRequest(user=state.user, history=tuple(history), query=message, k=k or self.k,
                           filters=self.filters(state) or None, exclude=tuple(exclude))

    def record_reply(self, state: ConversationState, text: str, items: list[str]) -> None:
        """An assistant turn: the agent's own reply, or a human recommender's when a dialogue is replayed."""
        state.recommended.extend(i for i in items if i not in state.recommended)
        state.turns.append(Turn(role="assistant", text=text, items=list(items)))

    def _begin(self, conversation_id: str, message: str) -> tuple[ConversationState, TurnRequest]:
        state = self.store.get(conversation_id)
        self.read_message(state, message)
        return state, self.request(state, message)

    def _finish(self, state: ConversationState, response: RecommendationResponse) -> None:
        self.record_reply(state, response.reply, [i.id for i in response.items])
        self.store.save(state)

    def respond(self, conversation_id: str, message: str, without_llm: str | None = None) -> RecommendationResponse:
        with self.turn_lock(conversation_id):
            state, request = self._begin(conversation_id, message)
            response = self.pipeline.recommend(request, without_llm)
            self._finish(state, response)
        return response

    def stream(self, conversation_id: str, message: str, without_llm: str | None = None
               ) -> Iterator[ItemsEvent | DeltaEvent | DoneEvent]:
        """One turn as events: items, reply deltas as they are written, then done (saved by then).
        `without_llm` (why) answers from the retriever alone (TurnPipeline.events)."""
        with self.turn_lock(conversation_id):
            state, request = self._begin(conversation_id, message)
            for event in self.pipeline.events(request, without_llm):
                if isinstance(event, DoneEvent):
                    self._finish(state, event.response)
                yield event
