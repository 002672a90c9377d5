"""Listwise reranking with a verbalizer (LlamaRec): one prompt per list, one forward pass, no generation.

The candidates are labelled A, B, C, ...; the log-probability of each label as the next token orders
the whole list. Permutation averaging (optional) shows the list in several orders and averages each
item's score, to cancel position bias. Every prompt of a batch goes to the backend in one call, so a
vLLM server batches them.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.llm.base import LLM
from prompts.loader import PromptTemplate, load_prompt

LABELS = tuple(string.ascii_uppercase[:20])
MAX_CANDIDATES = len(LABELS)


@dataclass(frozen=True)
class RerankInput:
    history_titles: Sequence[str]  # oldest first; the prompt shows the last `history_window`
    candidates: Sequence[tuple[str, str]]  # (item id, title) in the retriever's order


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


def build_prompts(item: RerankInput, template: PromptTemplate, count: int,
                  history_window: int = 10) -> tuple[list[str], list[list[int]]]:
    if len(item.candidates) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates per list, got {len(item.candidates)}")
    orders = permutations(len(item.candidates), count)
    prompts = []
    for order in orders:
        shown = [{"label": LABELS[slot], "title": item.candidates[i][1]} for slot, i in enumerate(order)]
        prompts.append(template.render(history=list(item.history_titles)[-history_window:], candidates=shown))
    return prompts, orders


def rerank_by_label_logprobs(llm: LLM, items: Sequence[RerankInput], permutation_count: int = 1,
                             template: PromptTemplate | None = None) -> list[RerankResult]:
    """Rerank many lists with one backend call. Ties (and unscored labels) keep the retriever's order."""
    template = template or load_prompt("rerank_listwise")
    all_prompts: list[str] = []
    layout: list[list[list[int]]] = []
    for item in items:
        prompts, orders = build_prompts(item, template, permutation_count)
        all_prompts.extend(prompts)
        layout.append(orders)
    labels = LABELS[:MAX_CANDIDATES]
    scores_per_prompt = llm.label_logprobs(all_prompts, labels) if all_prompts else []
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


class LLMReranker:
    """Reranks candidate lists of catalog item ids with an LLM, in batches of prompts."""

    def __init__(self, llm: LLM, titles: dict[str, str], permutations: int = 1, history_window: int = 10,
                 batch_size: int = 16, template: PromptTemplate | None = None) -> None:
        self.llm = llm
        self.titles = titles
        self.permutations = permutations
        self.history_window = history_window
        self.batch_size = batch_size
        self.template = template or load_prompt("rerank_listwise")

    def rerank(self, lists: Sequence[tuple[Sequence[str], Sequence[str]]],
               progress: Callable[[int], object] | None = None) -> list[RerankResult]:
        """`lists` holds (history ids oldest first, candidate ids in retriever order) pairs."""
        inputs = [RerankInput([self.titles.get(i, i) for i in list(history)[-self.history_window:]],
                              [(c, self.titles.get(c, c)) for c in candidates]) for history, candidates in lists]
        results: list[RerankResult] = []
        step = max(1, self.batch_size // self.permutations)
        for start in range(0, len(inputs), step):
            chunk = inputs[start:start + step]
            results.extend(rerank_by_label_logprobs(self.llm, chunk, self.permutations, self.template))
            if progress:
                progress(len(chunk))
        return results
