"""A turn as a pipeline of small steps: retrieve -> rerank -> explain -> reply.

`recommend` runs the steps and returns the response; `events` runs the same steps and yields typed
events, the reply sentence by sentence as the LLM writes it. Every item comes from the retrieved
candidates; when the LLM is down, slow or unusable the retriever's order and templated reasons stand,
and the response says why in `fallback_reason`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from agent.catalog import LoadedIndex
from agent.claims import ClaimChecker, ItemFacts
from agent.compose import acknowledgment, item_sentences, template_reply
from agent.events import (
    DeltaEvent,
    DoneEvent,
    ItemsEvent,
    Recommendation,
    RecommendationResponse,
    TurnRequest,
)
from agent.evidence import evidence_for
from agent.llm.base import LLMError
from agent.recommender import Candidate, Recommender
from agent.rerank import Reranker, RerankList
from agent.respond import ReplyWriter
from core.titles import natural_title


@dataclass
class Retrieved:
    candidates: list[Candidate]  # the pool, in the retriever's order
    seen: list[str]  # the user's stored history, then the request's context and history
    own: list[str]  # the user's stored history and the request's history: what evidence may cite as theirs


@dataclass
class Ranked:
    items: list[Recommendation]
    reranked: bool
    problem: str | None


@dataclass
class Timer:
    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = round(now - self.started - sum(self.marks.values()), 4)


def natural_titles_in(text: str, titles: list[str]) -> str:
    """The text with each of these catalog titles (longest first) in its natural order ('The Matrix (1999)')."""
    for title in titles:
        shown = natural_title(title)
        if shown != title:
            text = text.replace(title, shown)
    return text


def reply_request(index: LoadedIndex, query: str | None, seen: list[str]) -> str:
    """What the reply prompt says the user asked for: their words, or their most recent items."""
    recent = [index.entries[h].title for h in seen[-3:] if h in index.entries]
    return query or ("more like " + ", ".join(recent) if recent else "recommendations")


class TurnPipeline:
    def __init__(self, recommender: Recommender, reranker: Reranker | None, replier: ReplyWriter | None,
                 rerank_candidates: int = 20) -> None:
        self.recommender = recommender
        self.reranker = reranker
        self.replier = replier
        self.rerank_candidates = rerank_candidates

    @property
    def index(self) -> LoadedIndex:
        return self.recommender.index

    # steps -------------------------------------------------------------------------------------

    def retrieve(self, request: TurnRequest) -> Retrieved:
        pool = max(request.k, self.rerank_candidates)
        history = [*request.context, *request.history]
        found = self.recommender.candidates(user=request.user, history=history or None,
                                            query=request.query, k=pool, filters=request.filters,
                                            exclude=request.exclude)
        stored = list(self.index.user_history(request.user)[0]) if request.user is not None else []
        return Retrieved(found, stored + history, stored + list(request.history))

    def rerank(self, request: TurnRequest, retrieved: Retrieved, without_llm: str | None = None,
               use_reranker: bool = True) -> tuple[list[str], bool, str | None]:
        """The order of the pool: the LLM's for its first candidates, or the retriever's and why (`without_llm`:
        the LLM is not to be used in this turn, for that reason; `use_reranker` false: this kind of turn does
        not call the reranker, which is no failure)."""
        ids = [c.id for c in retrieved.candidates]
        if without_llm is not None and (self.reranker is not None or self.replier is not None):
            return ids, False, without_llm
        head = ids[: self.rerank_candidates]
        if self.reranker is None or not use_reranker:
            return ids, False, None
        if len(head) < 2 or (self.reranker.needs_history and not retrieved.seen):
            return ids, False, None  # nothing to reorder (or to rank by): not an LLM ranking, not a failure either
        try:
            result = self.reranker.rerank([RerankList(retrieved.seen, head, request.query)])[0]
        except LLMError as exc:
            return ids, False, str(exc)
        if result.scored == 0:
            return ids, False, "the LLM scored none of the candidates"
        return result.order + ids[len(head):], True, None

    def explain(self, request: TurnRequest, retrieved: Retrieved, order: list[str]) -> list[Recommendation]:
        by_id = {c.id: c for c in retrieved.candidates}
        items = []
        for item_id in order[: request.k]:
            reason, evidence = evidence_for(self.index, item_id, retrieved.own, request.query, request.filters)
            c = by_id[item_id]
            items.append(Recommendation(id=c.id, title=c.title, score=c.score, reason=reason, evidence=evidence,
                                        attributes=c.attributes))
        return items

    @cached_property
    def checker(self) -> ClaimChecker:
        """The claim check of this catalog's reply sentences (built on the first LLM reply)."""
        return ClaimChecker.for_index(self.index)

    def reply_parts(self, request: TurnRequest, ranked: Ranked, seen: list[str],
                    errors: list[str] | None = None) -> Iterator[tuple[str, str, list[int]]]:
        """The reply as (who wrote it, sentence, positions of the items it is about): the acknowledgment of
        the request's constraints ("template"), the LLM's grounded sentences ("llm"; none without an LLM, items,
        or after a failed ranking), then a sentence from the evidence for each item the LLM left out
        ("template"). An LLM error ends the LLM's part; its message goes to `errors`."""
        items = ranked.items
        if not items:
            yield "template", template_reply(self.index, items, request.filters), []
            return
        ack = acknowledgment(items, request.filters, self.index.noun)
        if ack:
            yield "template", ack, list(range(len(items)))
        covered: set[int] = set()
        if self.replier is not None and ranked.problem is None:
            entries = self.index.entries
            cited = [entries[e].title for item in items for e in item.evidence if e in entries]
            titles = sorted({*cited, *(item.title for item in items)}, key=len, reverse=True)
            facts = [ItemFacts.of(self.index, item) for item in items]
            try:
                for positions, sentence in self.replier.sentences(
                        reply_request(self.index, request.query, seen), items, cited, request.query or "",
                        facts, self.checker):
                    covered.update(positions)
                    yield "llm", natural_titles_in(sentence, titles), positions
            except LLMError as exc:
                if errors is not None:
                    errors.append(str(exc))
        rest = [n for n in range(len(items)) if n not in covered]
        written = item_sentences(self.index, [items[n] for n in rest], acknowledged=ack is not None)
        for n, (_, sentence) in zip(rest, written, strict=True):
            yield "template", sentence, [n]

    # the turn ----------------------------------------------------------------------------------

    def events(self, request: TurnRequest, without_llm: str | None = None, use_reranker: bool = True
               ) -> Iterator[ItemsEvent | DeltaEvent | DoneEvent]:
        """The turn as events; `without_llm` (why) skips the LLM steps, e.g. for a turn that queued too long."""
        timer = Timer()
        ranked, seen = self._rank(request, timer, without_llm, use_reranker)
        yield ItemsEvent(items=ranked.items, fallback=ranked.problem is not None, fallback_reason=ranked.problem)
        parts: list[tuple[str, str, list[int]]] = []
        errors: list[str] = []
        for by, sentence, about in self.reply_parts(request, ranked, seen, errors):
            parts.append((by, sentence, about))
            yield DeltaEvent(text=(" " if len(parts) > 1 else "") + sentence)
        yield DoneEvent(response=self._response(ranked, parts, errors[0] if errors else ranked.problem, timer))

    def recommend(self, request: TurnRequest, without_llm: str | None = None, use_reranker: bool = True
                  ) -> RecommendationResponse:
        timer = Timer()
        ranked, seen = self._rank(request, timer, without_llm, use_reranker)
        errors: list[str] = []
        parts = list(self.reply_parts(request, ranked, seen, errors))
        return self._response(ranked, parts, errors[0] if errors else ranked.problem, timer)

    def _rank(self, request: TurnRequest, timer: Timer, without_llm: str | None = None, use_reranker: bool = True
              ) -> tuple[Ranked, list[str]]:
        retrieved = self.retrieve(request)
        timer.mark("retrieval_s")
        order, reranked, problem = self.rerank(request, retrieved, without_llm, use_reranker)
        items = self.explain(request, retrieved, order)
        timer.mark("rerank_s")
        return Ranked(items, reranked, problem), retrieved.seen

    def _response(self, ranked: Ranked, parts: list[tuple[str, str, list[int]]], problem: str | None,
                  timer: Timer) -> RecommendationResponse:
        llm_configured = self.reranker is not None or self.replier is not None
        by_llm = any(by == "llm" for by, _, _ in parts)
        if self.replier is not None and not by_llm and problem is None and ranked.items:
            problem = "the LLM's reply could not be grounded in the recommended items"
        timer.mark("reply_s")
        return RecommendationResponse(
            items=ranked.items, reply=" ".join(sentence for _, sentence, _ in parts),
            reranked_by="llm" if ranked.reranked else "retriever", reply_by="llm" if by_llm else "template",
            fallback=llm_configured and problem is not None, fallback_reason=problem, timings=timer.marks)
