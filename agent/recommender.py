"""The Python API later layers build on: `Recommender.candidates(...)`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.catalog import LoadedIndex
from agent.filters import Filters, validate
from agent.llm.base import LLM, LLMError
from agent.rerank import LLMReranker
from agent.respond import (
    Recommendation,
    RecommendationResponse,
    evidence_for,
    safe_rerank,
    stream_reply,
    template_reply,
    write_reply,
)
from agent.retrieval import GENERATORS, Context, Request
from agent.settings import Settings
from index.embedder import Embedder
from index.errors import RecagentError
from index.store import IndexStore, chroma_client
from prompts.loader import load_prompt


class UnknownRanker(RecagentError):
    pass


@dataclass(frozen=True)
class Candidate:
    id: str
    title: str
    score: float
    attributes: dict[str, Any]


class Recommender:
    """Retrieves candidate items for a user, a history, a free-text query, or any mix of them."""

    def __init__(self, index: LoadedIndex, settings: Settings,
                 embedder_factory: Callable[[], Embedder] | None = None, llm: LLM | None = None) -> None:
        self.index = index
        self.settings = settings
        self.llm = llm
        self._embedder_factory = embedder_factory or (lambda: Embedder(settings.index.embedder))
        self._embedder: Embedder | None = None
        self.context = Context(index, settings.retrieval, encode_query=self._encode)

    @classmethod
    def open(cls, settings: Settings, namespace: str | None = None) -> Recommender:
        """Open the index of the configured dataset (or `namespace`) in the configured Chroma."""
        from index.loaders import resolve_dataset_folder

        if namespace is None:
            dataset = settings.data.dataset
            namespace = dataset if "/" not in dataset else resolve_dataset_folder(
                dataset, settings.data.data_dir).name
        store = IndexStore(chroma_client(settings.index), namespace)
        return cls(LoadedIndex(store), settings)

    def _encode(self, text: str) -> np.ndarray:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder.encode([text])[0]

    def recommend(self, user: str | None = None, history: Sequence[str] | None = None, query: str | None = None,
                  k: int = 5, filters: Filters | None = None, exclude: Sequence[str] = ()) -> RecommendationResponse:
        """Grounded recommendations: retrieve, rerank with the LLM when it works, explain, reply.

        Every returned item is a catalog item from the retrieved candidates; the reply names no other.
        """
        events = self.recommend_events(user=user, history=history, query=query, k=k, filters=filters,
                                       exclude=exclude, stream=False)
        return next(e["response"] for e in events if e["type"] == "done")

    def recommend_events(self, user: str | None = None, history: Sequence[str] | None = None,
                         query: str | None = None, k: int = 5, filters: Filters | None = None,
                         exclude: Sequence[str] = (), stream: bool = True) -> Iterator[dict[str, Any]]:
        """`recommend` as events: 'items' once ranked, 'delta' pieces of the reply, then 'done' with the
        whole RecommendationResponse. With `stream`, each reply sentence is sent as soon as the LLM has
        written it and it passed the grounding check; otherwise the reply is validated whole (with a retry).
        """
        started = time.perf_counter()
        pool = max(k, self.settings.rerank.candidates)
        found = self.candidates(user=user, history=history, query=query, k=pool, filters=filters,
                                exclude=exclude)
        by_id = {c.id: c for c in found}
        seen = list(self.index.user_history(user)[0]) if user is not None else []
        seen += list(history or [])
        rerank_config = self.settings.rerank
        reranker = None
        if self.llm is not None:
            template = load_prompt(rerank_config.prompt, rerank_config.prompt_version)
            reranker = LLMReranker(self.llm, self.index.titles, rerank_config.permutations,
                                   rerank_config.history_window, rerank_config.batch_size, template)
        retrieved = time.perf_counter()
        order, rank_problem = safe_rerank(self.llm, reranker.rerank if reranker else None, seen,
                                          [c.id for c in found[:rerank_config.candidates]])
        order += [c.id for c in found if c.id not in set(order)]
        items = []
        for item_id in order[:k]:
            reason, evidence = evidence_for(self.index, item_id, seen, query)
            c = by_id[item_id]
            items.append(Recommendation(id=c.id, title=c.title, score=c.score, reason=reason, evidence=evidence,
                                        attributes=c.attributes))
        reranked = time.perf_counter()
        yield {"type": "items", "items": items, "fallback": rank_problem is not None and self.llm is not None,
               "fallback_reason": rank_problem}
        reply, reply_problem = None, None
        if self.llm is not None and rank_problem is None and items:
            recent = [self.index.entries[h].title for h in seen[-3:] if h in self.index.entries]
            request = query or ("more like " + ", ".join(recent) if recent else "recommendations")
            cited = [self.index.entries[e].title for item in items for e in item.evidence if e in self.index.entries]
            catalog = list(self.index.titles.values())
            try:
                if stream:
                    pieces = []
                    for piece in stream_reply(self.llm, request, items, catalog, cited):
                        pieces.append(piece)
                        yield {"type": "delta", "text": piece}
                    reply = "".join(pieces) or None
                else:
                    reply = write_reply(self.llm, request, items, catalog, cited)
            except LLMError as exc:
                reply_problem = str(exc)
            if reply is None and reply_problem is None:
                reply_problem = "the LLM's reply could not be grounded in the recommended items"
        text = reply or template_reply(items)
        if stream and reply is None:
            for piece in re.split(r"(?<=\n)", text):
                yield {"type": "delta", "text": piece}
        problem = rank_problem or reply_problem
        timings = {"retrieval_s": retrieved - started, "rerank_s": reranked - retrieved,
                   "reply_s": time.perf_counter() - reranked}
        yield {"type": "done", "response": RecommendationResponse(
            items=items, reply=text,
            reranked_by="llm" if self.llm is not None and rank_problem is None else "retriever",
            reply_by="llm" if reply else "template", fallback=self.llm is not None and problem is not None,
            fallback_reason=problem, timings={key: round(value, 4) for key, value in timings.items()})}

    def similar_users(self, user: str, k: int = 10) -> list[tuple[str, float]]:
        """Users whose history vectors are closest to this user's (cosine), nearest first."""
        users = self.index.store.collection("users")
        got = users.get(ids=[user], include=["embeddings"])
        if not got["ids"]:
            raise RecagentError(f"unknown user {user!r}")
        hits = self.index.store.query("users", np.asarray(got["embeddings"], dtype=np.float32), k + 1)[0]
        return [(h.id, h.score) for h in hits if h.id != user][:k]

    def similar_items(self, items: Sequence[str], k: int = 10) -> list[Candidate]:
        """Items like these, by the collaborative vectors (an unordered set: no recency weighting)."""
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
            raise RecagentError("k must be at least 1")
        if filters:
            validate(filters)
        items: list[str] = []
        times: list[int] | None = []
        if user is not None:
            items, stored_times = self.index.user_history(user)
            times = list(stored_times)
        if history:
            items += [str(i) for i in history]
            if timestamps is not None and times is not None:
                times += [int(t) for t in timestamps]
            else:  # given histories without times: each item is its own step, after the stored ones
                start = (times[-1] + 1) if times else 0
                times = (times or []) + list(range(start, start + len(history)))
        allowed = self.index.allowed(filters)
        if only is not None:
            allowed = set(only) if allowed is None else allowed & set(only)
        request = Request(history=items, timestamps=times if items else None, query=query,
                          exclude=frozenset(items if exclude_seen else ()) | frozenset(exclude),
                          allowed=frozenset(allowed) if allowed is not None else None)
        ranked = GENERATORS[ranker](self.context, request, k)
        return [Candidate(i, self.index.entries[i].title if i in self.index.entries else i, score,
                          self.index.entries[i].attributes if i in self.index.entries else {})
                for i, score in ranked]
