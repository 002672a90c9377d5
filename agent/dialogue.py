"""A conversation with the recommender: typed state per conversation, updated turn by turn.

A turn reads the message into an Intent (agent.intent: liked, disliked, seen and referred-to items,
constraints on the catalog's own attributes with their logic, years, the residual text) and updates the
state from it alone. It then runs the turn pipeline with that state and the user's stored
history, and saves the finished turn before its last event is sent. Turns of one conversation run one
at a time, also across processes sharing the store; a message that finds its conversation busy for too
long gets Conflict. Feedback (like,
dislike, seen) updates the state; a disliked or seen item never comes back in that conversation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from agent.conversations import ConversationState, ConversationStore, Turn
from agent.events import DeltaEvent, DoneEvent, ItemsEvent, RecommendationResponse, TurnRequest
from agent.intent import Intent, IntentReader, ReadContext, RulesReader, apply_intent
from agent.linear_ranker import warm_linear
from agent.recommender import Recommender
from agent.turn import TurnPipeline
from agent.understanding import CatalogVocabulary, TitleResolver, title_key
from core.errors import Conflict, InvalidRequest, NotFound, UnknownItem

Feedback = Literal["like", "dislike", "seen"]
StateKind = Literal["liked", "disliked", "seen", "mentioned", "include", "exclude", "years"]
STATE_KINDS: tuple[str, ...] = ("liked", "disliked", "seen", "mentioned", "include", "exclude", "years")
__all__ = ["ConversationAgent", "Feedback", "StateKind", "TitleResolver", "title_key"]


class ConversationAgent:
    """Runs turns over a TurnPipeline and a ConversationStore."""

    def __init__(self, pipeline: TurnPipeline, store: ConversationStore,
                 vocabulary: CatalogVocabulary | None = None, k: int = 5, turn_wait_s: float = 30.0,
                 reader: IntentReader | None = None, rerank: bool = False) -> None:
        self.pipeline = pipeline
        self.store = store
        self.vocabulary = vocabulary or CatalogVocabulary(pipeline.index, pipeline.recommender.context.encoder)
        self.resolver = TitleResolver(pipeline.recommender)
        self.reader: IntentReader = reader or RulesReader(self.vocabulary, self.resolver, pipeline.index.entries)
        self.k = k
        self.turn_wait_s = turn_wait_s
        self.rerank = rerank  # turns call the pipeline's reranker (rerank.in_conversations)
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

    def update_state(self, state: ConversationState, message: str) -> Intent:
        """Read the message in its conversation and apply what it says; the Intent is all the state learns."""
        intent = self.reader.read(message, ReadContext(state))
        apply_intent(state, intent)
        return intent

    def filters(self, state: ConversationState) -> dict[str, object]:
        """The state's constraints as a retrieval filter: `include` as $all (each value or one of its family),
        `include_any` as $in, `exclude` as $nin (each with its family), and the years."""
        filters: dict[str, object] = {}
        for attribute in sorted(set(state.include) | set(state.include_any) | set(state.exclude)):
            condition: dict[str, list[str | list[str]]] = {}
            if state.include.get(attribute):
                required: list[str | list[str]] = []
                for value in state.include[attribute]:
                    family = self.vocabulary.family(attribute, value)
                    required.append(family[0] if len(family) == 1 else family)
                condition["$all"] = required
            if state.include_any.get(attribute):
                condition["$in"] = sorted({v for value in state.include_any[attribute]
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

    def fitting(self, filters: dict[str, object], exclude: set[str], k: int) -> dict[str, object]:
        """The filters, or, when fewer than k items pass them, the least relaxed form that k items pass:
        all-of values become one-of, then wanted values go (ruled-out values and years stay), then years."""
        def passing(candidate: dict[str, object]) -> int:
            allowed = self.pipeline.index.allowed(candidate)
            return len(allowed - exclude) if allowed is not None else k

        if not filters or passing(filters) >= k:
            return filters
        any_of = {a: ({"$in": sorted({v for x in c.pop("$all") for v in (x if isinstance(x, list) else [x])}
                                     | set(c.get("$in", [])))} | c) if isinstance(c, dict) and "$all" in c else c
                  for a, c in ((a, dict(c) if isinstance(c, dict) else c) for a, c in filters.items())}
        no_wanted = {a: {op: v for op, v in c.items() if op not in ("$all", "$in")} if isinstance(c, dict) else c
                     for a, c in filters.items()}
        no_wanted = {a: c for a, c in no_wanted.items() if c}
        year = self.vocabulary.year_attribute
        no_years = {a: c for a, c in no_wanted.items() if a != year}
        for candidate in (any_of, no_wanted, no_years):
            if passing(candidate) >= k:
                return candidate
        return no_years

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

    def forget(self, conversation_id: str, kind: StateKind, value: str) -> ConversationState:
        """Take one entry out of the conversation's state: an item id from liked, disliked, seen or mentioned;
        a value from every attribute's include (and one-of) or exclude; years 'min', 'max' or 'all' (both
        bounds). NotFound when the state has no such entry; nothing else changes."""
        if kind not in STATE_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(STATE_KINDS)}, not {kind!r}")
        with self.turn_lock(conversation_id):
            state = self.store.get(conversation_id)
            if kind == "years":
                if value not in ("min", "max", "all"):
                    raise InvalidRequest(f"years: the value must be min, max or all, not {value!r}")
                bounds = {"min": ["year_min"], "max": ["year_max"], "all": ["year_min", "year_max"]}[value]
                if all(getattr(state, bound) is None for bound in bounds):
                    raise NotFound(f"the conversation has no year bound {value!r} to forget")
                for bound in bounds:
                    setattr(state, bound, None)
            elif kind in ("include", "exclude"):
                groups = [state.include, state.include_any] if kind == "include" else [state.exclude]
                found = False
                for group in groups:
                    for attribute in [a for a, values in group.items() if value in values]:
                        group[attribute] = [v for v in group[attribute] if v != value]
                        if not group[attribute]:
                            del group[attribute]
                        found = True
                if not found:
                    raise NotFound(f"{value!r} is not among the conversation's {kind}d values")
            else:
                bucket: list[str] = getattr(state, kind)
                if value not in bucket:
                    raise NotFound(f"item {value!r} is not among the conversation's {kind} items")
                bucket.remove(value)
            self.store.save(state)
        return state

    # turns -------------------------------------------------------------------------------------

    def read_message(self, state: ConversationState, message: str) -> Intent:
        """A user message joins the conversation and updates its state."""
        state.turns.append(Turn(role="user", text=message))
        return self.update_state(state, message)

    def request(self, state: ConversationState, message: str | None, k: int | None = None) -> TurnRequest:
        """What a turn retrieves for: the items recommended so far, then the liked and mentioned ones, as the
        history (the most recent last, so the user's own weigh most; history items are not recommended
        again), the latest message's residual text as the query (when `message` is that message; other text
        as it is), the state's constraints as filters (relaxed when too few items pass), and disliked, seen and
        mentioned items left out. Earlier recommendations are context, never liked items. Taking them as
        context lifted recall@10 on ReDial's validation dialogues (README, Evaluation)."""
        own = [i for i in dict.fromkeys([*state.liked, *state.mentioned])
               if i not in state.disliked and i not in state.seen]
        context = [i for i in dict.fromkeys(state.recommended)
                   if i not in own and i not in state.disliked and i not in state.seen]
        exclude = [*state.disliked, *state.seen, *state.mentioned]
        latest = next((t.text for t in reversed(state.turns) if t.role == "user"), None)
        query = state.query if message is not None and message == latest else message
        k = k or self.k
        filters = self.fitting(self.filters(state), set(exclude) | set(own) | set(context), k)
        return TurnRequest(user=state.user, history=tuple(own), context=tuple(context), query=query, k=k,
                           filters=filters or None, exclude=tuple(exclude))

    def record_reply(self, state: ConversationState, text: str, items: list[str]) -> None:
        """An assistant turn: the agent's own reply, or a human recommender's when a dialogue is replayed."""
        state.recommended.extend(i for i in items if i not in state.recommended)
        state.turns.append(Turn(role="assistant", text=text, items=list(items)))

    def _begin(self, conversation_id: str, message: str) -> tuple[ConversationState, TurnRequest, Intent]:
        state = self.store.get(conversation_id)
        intent = self.read_message(state, message)
        return state, self.request(state, message), intent

    def _finish(self, state: ConversationState, response: RecommendationResponse) -> None:
        self.record_reply(state, response.reply, [i.id for i in response.items])
        self.store.save(state)

    def respond(self, conversation_id: str, message: str, without_llm: str | None = None) -> RecommendationResponse:
        with self.turn_lock(conversation_id):
            state, request, intent = self._begin(conversation_id, message)
            response = self.pipeline.recommend(request, without_llm, self.rerank).model_copy(
                update={"intent": intent})
            self._finish(state, response)
        return response

    def stream(self, conversation_id: str, message: str, without_llm: str | None = None
               ) -> Iterator[ItemsEvent | DeltaEvent | DoneEvent]:
        """One turn as events: items, reply deltas as they are written, then done (saved by then).
        `without_llm` (why) answers from the retriever alone (TurnPipeline.events)."""
        with self.turn_lock(conversation_id):
            state, request, intent = self._begin(conversation_id, message)
            for event in self.pipeline.events(request, without_llm, self.rerank):
                if isinstance(event, DoneEvent):
                    event = DoneEvent(response=event.response.model_copy(update={"intent": intent}))
                    self._finish(state, event.response)
                yield event
