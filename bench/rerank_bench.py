"""Reranking 20 candidates by label log-probabilities (one forward pass) against generating the
ranking as text for the same lists, per backend; the likelihood ranker on the same lists; and the time to
the first streamed reply token."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from agent.assemble import Agent, build_agent, make_configured_llm
from agent.llm.base import Message
from agent.llm.model_files import resolve_model
from agent.llm.serve import serving
from agent.rerank import LikelihoodReranker, RerankInput, RerankList, render_prompt, rerank_inputs
from agent.settings import Settings
from core.labels import LABELS
from prompts.loader import load_prompt


def _lists(agent: Agent, count: int) -> list[RerankList]:
    """Distinct (history, 20 candidates) lists for real users, so no prompt prefix is shared."""
    lists = []
    for user in agent.index.store.user_ids(limit=count):
        history, _ = agent.index.user_history(user)
        candidates = [c.id for c in agent.recommender.candidates(user=user, k=20)]
        lists.append(RerankList(history, candidates))
    return lists


def _stats(seconds: list[float]) -> dict[str, float]:
    return {"p50_s": round(float(np.percentile(seconds, 50)), 3), "p95_s": round(float(np.percentile(seconds, 95)), 3)}


def _generate_prompt(agent: Agent, item: RerankInput) -> str:
    """The yardstick: the same lists, reversed (no prefix-cache hits), ranked by generating titles."""
    return load_prompt("rerank_generate").render(
        noun=agent.index.noun, history=list(item.history_titles)[::-1],
        candidates=[{"label": LABELS[i], "title": t} for i, (_, t, _) in enumerate(list(item.candidates)[::-1])])


def _one_backend(agent: Agent, lists: list[RerankList], tokenizer: Any, max_tokens: int) -> dict[str, Any]:
    llm, reranker = agent.llm, agent.reranker
    assert llm is not None and reranker is not None
    inputs = rerank_inputs(agent.index, lists)
    warm = inputs[0]
    llm.label_logprobs([render_prompt(reranker.template, warm, [1, 0], agent.index.noun)], LABELS,
                       adapter=reranker.adapter)
    llm.complete([_generate_prompt(agent, warm)], max_tokens=4)
    label_t, gen_t, label_tokens, gen_tokens = [], [], [], []
    for item in inputs:
        prompt = render_prompt(reranker.template, item, range(len(item.candidates)), agent.index.noun)
        started = time.perf_counter()
        llm.label_logprobs([prompt], LABELS, adapter=reranker.adapter)
        label_t.append(time.perf_counter() - started)
        label_tokens.append(len(tokenizer(prompt)["input_ids"]) + 1)
    for item in inputs:
        prompt = _generate_prompt(agent, item)
        started = time.perf_counter()
        text = llm.complete([prompt], max_tokens=max_tokens)[0]
        gen_t.append(time.perf_counter() - started)
        gen_tokens.append(len(tokenizer(prompt)["input_ids"]) + len(tokenizer(text, add_special_tokens=False)
                                                                    ["input_ids"]))
    messages: list[Message] = [{"role": "user", "content": f"In one sentence, why watch {inputs[0].candidates[0][1]}?"}]
    started = time.perf_counter()
    first = None
    for _ in llm.stream_chat(messages, max_tokens=32):
        if first is None:
            first = time.perf_counter() - started
    label, gen = _stats(label_t), _stats(gen_t)
    return {"adapter": reranker.adapter, "prompt": reranker.template.id,
            "label_logprobs": {**label, "tokens_per_request": round(float(np.mean(label_tokens)), 1)},
            "generate_ranking": {**gen, "tokens_per_request": round(float(np.mean(gen_tokens)), 1)},
            "p50_ratio_generate_over_labels": round(gen["p50_s"] / label["p50_s"], 1),
            "time_to_first_reply_token_s": round(first or float("nan"), 3)}


def _likelihood(agent: Agent, lists: list[RerankList], tokenizer: Any) -> dict[str, Any]:
    """The same lists through the likelihood ranker (`rerank.method = likelihood`): one call a list, the
    history once and each candidate's title after it; tokens are the history's plus every title's."""
    reranker = agent.reranker
    assert isinstance(reranker, LikelihoodReranker)
    reranker.rerank(lists[:1])  # warm-up
    seconds, tokens = [], []
    for entry in lists:
        started = time.perf_counter()
        reranker.rerank([entry])
        seconds.append(time.perf_counter() - started)
        titles = [agent.index.titles.get(c, c) for c in entry.candidates]
        tokens.append(len(tokenizer(reranker.prefix(entry.history))["input_ids"])
                      + sum(len(tokenizer(f" {t};", add_special_tokens=False)["input_ids"]) for t in titles))
    return {"adapter": reranker.adapter, "prompt": reranker.template.id, **_stats(seconds),
            "tokens_per_list": round(float(np.mean(tokens)), 1)}


def bench_rerank(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    base = build_agent(settings, llm=None)
    lists = _lists(base, args.lists)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(settings.llm.model, settings.llm.model_cache))
    out: dict[str, Any] = {"benchmark": "rerank", "lists": len(lists), "candidates": 20,
                           "generate_max_tokens": args.max_tokens}
    for backend in args.backends.split(","):
        configured = settings.llm.model_copy(update={"backend": backend})
        with serving(configured, 8399, own=not args.llm_url) as config:
            served = settings.model_copy(update={"llm": config})
            agent = build_agent(served, llm=make_configured_llm(served), index=base.index, encoder=base.encoder)
            out[backend] = _one_backend(agent, lists, tokenizer, args.max_tokens)
            likely = served.model_copy(update={"rerank": served.rerank.model_copy(update={"method": "likelihood"})})
            result = _likelihood(build_agent(likely, llm=agent.llm, index=base.index, encoder=base.encoder),
                                 lists, tokenizer)
            out[backend]["likelihood"] = result
            out[backend]["p50_ratio_likelihood_over_labels"] = round(
                result["p50_s"] / out[backend]["label_logprobs"]["p50_s"], 2)
    return out
