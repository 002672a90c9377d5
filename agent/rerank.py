"""LLM reranking, two ways (`rerank.method`).

`labels`: listwise reranking with a verbalizer (LlamaRec): one prompt per list, one forward pass, no generation.

The candidates are labelled A, B, C, ... (core.labels); the log-probability of each label as the next
token orders the whole list. Permutation averaging (optional) shows the list in several orders and
averages each item's score, to cancel position bias. Every prompt of a batch goes to the backend in one
call, so a vLLM server batches them. The prompt names the catalog's item noun, shows the user's request
when there is one and, from version 3 on, the evidence the retriever has next to each title.

`likelihood`: each candidate's title scored as the continuation of the user's history written as a
sequence (`LikelihoodReranker`), with the adapter `recagent train adapt` trains on such sequences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from agent.catalog import LoadedIndex
from agent.evidence import candidate_facts
from agent.llm.base import LLM
from core.labels import LABELS, MAX_LABELLED
from prompts.loader import PromptTemplate, prompt_text

MAX_CANDIDATES = MAX_LABELLED
TITLE_CHARS = 60  # LlamaRec cuts titles to 32 tokens; this is shorter still


@dataclass(frozen=True)
class RerankInput:
    history_titles: Sequence[str]  # oldest first; the prompt shows the last `history_window`
    candidates: Sequence[tuple[str, str, str]]  # (item id, title, evidence) in the retriever's order
    request: str | None = None


@dataclass(frozen=True)
class RerankResult:
    order: list[str]  # item ids, best first
    scores: dict[str, float]  # mean label log-probability per item
    scored: int  # labels the backend returned a score for (a server's top-k may miss some)


def permutations(n: int, count: int, seed: int = 0) -> list[list[int]]:
    """The identity first, then the reverse, then seeded shuffles."""
    orders = [list(range(n))]
    if count > 1:
        orders.append(list(range(n))[::-1])
    rng = np.random.default_rng(seed)
    while len(orders) < count:
        orders.append([int(i) for i in rng.permutation(n)])
    return orders[:count]


_ASIDE = re.compile(r"(?<=\S)\s*\((?!\d{4}\)\s*$)[^()]*\)")  # a parenthesis that is not a trailing "(1999)"


def short_title(title: str) -> str:
    """The title without asides such as original-language titles, cut to TITLE_CHARS."""
    title = _ASIDE.sub("", title).strip() or title
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 1].rstrip() + "…"


def render_prompt(template: PromptTemplate, item: RerankInput, order: Sequence[int], noun: str,
                  history_window: int = 10) -> str:
    """The prompt that shows `item`'s candidates in `order` (slot -> candidate index)."""
    shown = [{"label": LABELS[slot], "title": short_title(item.candidates[i][1]), "facts": item.candidates[i][2]}
             for slot, i in enumerate(order)]
    history = [short_title(t) for t in list(item.history_titles)[-history_window:]]
    return template.render(noun=noun, history=history, request=(item.request or "").strip()[:300],
                           candidates=shown)


def build_prompts(item: RerankInput, template: PromptTemplate, count: int, noun: str = "item",
                  history_window: int = 10) -> tuple[list[str], list[list[int]]]:
    if len(item.candidates) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates per list, got {len(item.candidates)}")
    orders = permutations(len(item.candidates), count)
    return [render_prompt(template, item, order, noun, history_window) for order in orders], orders


def rerank_by_label_logprobs(llm: LLM, items: Sequence[RerankInput], template: PromptTemplate,
                             permutation_count: int = 1, noun: str = "item", history_window: int = 10,
                             adapter: str | None = None) -> list[RerankResult]:
    """Rerank many lists with one backend call. Ties (and unscored labels) keep the retriever's order."""
    all_prompts: list[str] = []
    layout: list[list[list[int]]] = []
    for item in items:
        prompts, orders = build_prompts(item, template, permutation_count, noun, history_window)
        all_prompts.extend(prompts)
        layout.append(orders)
    scores_per_prompt = llm.label_logprobs(all_prompts, LABELS, adapter=adapter) if all_prompts else []
    results = []
    cursor = 0
    for item, orders in zip(items, layout, strict=True):
        n = len(item.candidates)
        totals = np.zeros(n)
        scored = 0
        for order in orders:
            scores = scores_per_prompt[cursor]
            cursor += 1
            floor = min(scores.values(), default=0.0) - 10.0  # below anything the backend returned
            for slot, index in enumerate(order):
                value = scores.get(LABELS[slot])
                scored += value is not None
                totals[index] += value if value is not None else floor
        means = totals / max(len(orders), 1)
        ranked = sorted(range(n), key=lambda i: (-means[i], i))
        results.append(RerankResult([item.candidates[i][0] for i in ranked],
                                    {item.candidates[i][0]: float(means[i]) for i in range(n)}, scored))
    return results


@dataclass(frozen=True)
class RerankList:
    """One list to rerank: the history (ids, oldest first), candidate ids in retriever order, a request."""

    history: Sequence[str]
    candidates: Sequence[str]
    request: str | None = None


def rerank_inputs(index: LoadedIndex, lists: Sequence[RerankList], history_window: int = 10) -> list[RerankInput]:
    """Titles and evidence for each list, read from the index."""
    inputs = []
    for entry in lists:
        titles = index.titles
        facts = candidate_facts(index, entry.history, entry.candidates)
        inputs.append(RerankInput([titles.get(i, i) for i in list(entry.history)[-history_window:]],
                                  [(c, titles.get(c, c), f) for c, f in zip(entry.candidates, facts, strict=True)],
                                  entry.request))
    return inputs


@dataclass(eq=False)
class _Reranker:
    """What both rerankers hold: the model, the index the titles come from, the prompt, how much history it
    shows, the adapter, and the weight of the retriever's order in the final score (`blend_with_retriever`)."""

    llm: LLM = field(repr=False)
    index: LoadedIndex = field(repr=False)
    template: PromptTemplate
    history_window: int = 10
    adapter: str | None = None
    blend: float = 0.0

    def rerank(self, lists: Sequence[RerankList], progress: Callable[[int], object] | None = None,
               blend: float | None = None) -> list[RerankResult]:
        """Rerank lists whose candidates come in the retriever's order; `blend` overrides the configured
        weight of that order (0 where the order means nothing, e.g. shuffled candidates)."""
        return blend_lists(self.unblended(lists, progress), lists, self.blend if blend is None else blend)

    def unblended(self, lists: Sequence[RerankList], progress: Callable[[int], object] | None) -> list[RerankResult]:
        """The model's own order and scores of each list, before any blend."""
        raise NotImplementedError


@dataclass(eq=False)
class LLMReranker(_Reranker):
    """Reranks candidate lists of catalog item ids with an LLM (and optionally a LoRA adapter), in batches."""

    needs_history: ClassVar[bool] = False  # the prompt can carry the request alone
    permutations: int = 1
    batch_size: int = 16

    def unblended(self, lists: Sequence[RerankList], progress: Callable[[int], object] | None) -> list[RerankResult]:
        inputs = rerank_inputs(self.index, lists, self.history_window)
        results: list[RerankResult] = []
        step = max(1, self.batch_size // self.permutations)
        for start in range(0, len(inputs), step):
            chunk = inputs[start:start + step]
            results.extend(rerank_by_label_logprobs(self.llm, chunk, self.template, self.permutations,
                                                    self.index.noun, self.history_window, self.adapter))
            if progress:
                progress(len(chunk))
        return results


@dataclass(eq=False)
class LikelihoodReranker(_Reranker):
    """Reranks by how likely the model finds each candidate's title as the next item of the user's history.

    The prompt (`rerank_sequence`) writes the history as one sequence, the way `recagent train adapt` writes
    the users' training sequences; each candidate's score is the mean log-probability of the tokens of
    " <title>;" after it (the mean, not the sum, so that long titles are not penalised for their length).
    One backend call per list: the in-process model computes the history once for all candidates. With no
    history there is nothing to continue (`needs_history`): such a list keeps the retriever's order and
    `scored` is 0. The request is not part of this prompt: it shapes the retrieval that made the list.
    """

    needs_history: ClassVar[bool] = True
    permutations: ClassVar[int] = 1  # one order: the candidates are scored each on its own
    history_window: int = 19

    def prefix(self, history: Sequence[str]) -> str:
        return sequence_texts(self.index, self.template, history, (), self.history_window)[0]

    def unblended(self, lists: Sequence[RerankList], progress: Callable[[int], object] | None) -> list[RerankResult]:
        results = []
        for entry in lists:
            candidates = list(entry.candidates)
            if not entry.history or len(candidates) < 2:
                results.append(RerankResult(candidates, dict.fromkeys(candidates, 0.0), 0))
            else:
                prefix, continuations = sequence_texts(self.index, self.template, entry.history, candidates,
                                                       self.history_window)
                scored = self.llm.continuation_logprobs(prefix, continuations, adapter=self.adapter)
                scores = {c: total / max(count, 1) for c, (total, count) in zip(candidates, scored, strict=True)}
                order = sorted(range(len(candidates)), key=lambda i: (-scores[candidates[i]], i))
                results.append(RerankResult([candidates[i] for i in order], scores, len(candidates)))
            if progress:
                progress(1)
        return results


Reranker = LLMReranker | LikelihoodReranker


def sequence_texts(index: LoadedIndex, template: PromptTemplate, history: Sequence[str], candidates: Sequence[str],
                   history_window: int = 19) -> tuple[str, list[str]]:
    """The likelihood ranker's texts: the last `history_window` items written as one sequence, and each
    candidate's continuation of it (" <title>;", the title as the template shows it: prompt_text).
    `recagent train rerank --objective likelihood` trains on exactly these."""
    titles = index.titles
    recent = [titles.get(i, i) for i in list(history)[-history_window:]]
    return template.render(noun=index.noun, history=recent), [f" {prompt_text(titles.get(c, c))};" for c in candidates]


def blend_lists(results: Sequence[RerankResult], lists: Sequence[RerankList], weight: float) -> list[RerankResult]:
    """Each list's result blended with its retriever order (an unscored list, all scores equal, keeps that order)."""
    return [blend_with_retriever(r, entry.candidates, weight) for r, entry in zip(results, lists, strict=True)]


def blend_with_retriever(result: RerankResult, retriever_order: Sequence[str], weight: float) -> RerankResult:
    """The LLM's scores plus `weight` times the retriever's rank prior, -log(1 + rank): 0 keeps the LLM's
    order; the weight is chosen on validation by `train rerank` or `train adapt` (the adapter's manifest)."""
    if weight == 0.0:
        return result
    scores = {item: result.scores[item] - weight * np.log1p(rank) for rank, item in enumerate(retriever_order)}
    order = sorted(scores, key=lambda item: (-scores[item], retriever_order.index(item)))
    return RerankResult(order, scores, result.scored)
