"""Retrieval: `Recommender.candidates(...)` ranks catalog items for a user, a history, a query or a mix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.catalog import LoadedIndex
from agent.filters import Filters, validate
from agent.linear_ranker import linear
from agent.retrieval import BASE_GENERATORS, Context, Generator, QueryEncoder, Request, fused
from agent.settings import RetrievalConfig
from core.errors import InvalidRequest, UnknownItem

GENERATORS: dict[str, Generator] = {**BASE_GENERATORS, "fused": fused, "linear": linear}  # every ranker, by name


class UnknownRanker(InvalidRequest):
    pass


@dataclass(frozen=True)
class Candidate:
    id: str
    title: str
    score: float
    attributes: dict[str, Any]


class Recommender:
    """Retrieves candidate items for a user, a history, a free-text query, or any mix of them."""

    def __init__(self, index: LoadedIndex, config: RetrievalConfig, encoder: QueryEncoder | None = None,
                 sources: dict[str, LoadedIndex] | None = None) -> None:
        self.index = index
        self.config = config
        self.context = Context(index, config, encoder, {name: Context(source, config, encoder)
                                                        for name, source in (sources or {}).items()})

    def similar_users(self, user: str, k: int = 10) -> list[tuple[str, float]]:
        """Users whose history vectors are closest to this user's (cosine), nearest first."""
        hits = self.index.store.nearest("users", self.index.store.user_vector(user)[None, :], k + 1)[0]
        return [(h.id, h.score) for h in hits if h.id != user][:k]

    def similar_items(self, items: Sequence[str], k: int = 10) -> list[Candidate]:
        """Items like these, by the collaborative vectors (an unordered set: no recency weighting)."""
        for item in items:
            if item not in self.index.entries:
                raise UnknownItem(item)
        return self.candidates(history=list(items), timestamps=[0] * len(items), k=k, ranker="collab")

    def candidates(self, user: str | None = None, history: Sequence[str] | None = None,
                   query: str | None = None, k: int = 10, filters: Filters | None = None,
                   ranker: str = "fused", timestamps: Sequence[int] | None = None,
                   exclude: Sequence[str] = (), exclude_seen: bool = True,
                   only: Sequence[str] | None = None) -> list[Candidate]:
        """Top-k items. A known `user` brings their stored history; `history` (oldest first) adds to it.

        `only` restricts the ranking to those item ids (e.g. a fixed candidate set to score).
        """
        if ranker not in GENERATORS:
            raise UnknownRanker(f"unknown ranker {ranker!r}; choose from {', '.join(GENERATORS)}")
        if k < 1:
            raise InvalidRequest("k must be at least 1")
        request = self.request(user, history, query, filters, timestamps, exclude, exclude_seen, only)
        ranked = GENERATORS[ranker](self.context, request, k)
        return [Candidate(i, self.index.entries[i].title if i in self.index.entries else i, score,
                          self.index.entries[i].attributes if i in self.index.entries else {})
                for i, score in ranked]

    def request(self, user: str | None = None, history: Sequence[str] | None = None, query: str | None = None,
                filters: Filters | None = None, timestamps: Sequence[int] | None = None,
                exclude: Sequence[str] = (), exclude_seen: bool = True,
                only: Sequence[str] | None = None) -> Request:
        """What the generators see for these arguments (the same as `candidates` ranks for)."""
        if filters:
            validate(filters)
        if timestamps is not None and len(timestamps) != len(history or ()):
            raise InvalidRequest(f"{len(timestamps)} timestamps for a history of {len(history or ())} items")
        items: list[str] = []
        times: list[int] = []
        if user is not None:
            items, stored_times = self.index.user_history(user)
            times = list(stored_times)
        if history:
            items += [str(i) for i in history]
            if timestamps is not None:
                times += [int(t) for t in timestamps]
            elif times:  # a history given without times: each item is its own step, after the stored ones
                times += list(range(times[-1] + 1, times[-1] + 1 + len(history)))
            # else no time at all: the order alone (times made up from 0 would date the request 1970)
        allowed = self.index.allowed(filters)
        if only is not None:
            allowed = set(only) if allowed is None else allowed & set(only)
        return Request(history=items, timestamps=times or None, query=query,
                       exclude=frozenset(items if exclude_seen else ()) | frozenset(exclude),
                       allowed=frozenset(allowed) if allowed is not None else None)
