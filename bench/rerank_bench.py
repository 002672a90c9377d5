"""Reranking 20 candidates by label log-probabilities (one forward pass) against generating the
ranking as text for the same lists, per backend; and the time to the first streamed reply token."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from agent.llm.backends import make_llm
from agent.llm.base import LLM, Message
from agent.llm.model_files import resolve_model
from agent.recommender import Recommender
from agent.rerank import LABELS
from agent.settings import Settings
from prompts.loader import load_prompt


def _lists(settings: Settings, count: int) -> list[tuple[list[str], list[str]]]:
    """Distinct (history titles, 20 candidate titles) pairs for real users, so no prefix is shared."""
    recommender = Recommender.open(settings)
    users = recommender.index.store.get_all("users", include=[])["ids"][: count]
    lists = []
    for user in users:
        history, _ = recommender.index.user_history(user)
        titles = [recommender.index.entries[h].title for h in history[-10:]]
        candidates = [c.title for c in recommender.candidates(user=user, k=20)]
        lists.append((titles, candidates))
    return lists


def _render(name: str, history: list[str], candidates: list[str]) -> str:
    return load_prompt(name).render(history=history, candidates=[{"label": LABELS[i], "title": t}
                                                                  for i, t in enumerate(candidates)])


def _stats(seconds: list[float]) -> dict[str, float]:
    return {"p50_s": round(float(np.percentile(seconds, 50)), 3), "p95_s": round(float(np.percentile(seconds, 95)), 3)}


def _one_backend(llm: LLM, lists: list[tuple[list[str], list[str]]], tokenizer: Any,
                 max_tokens: int) -> dict[str, Any]:
    warm = _render("rerank_listwise", ["Warm-up (2000)"], ["A film (2001)", "Another film (2002)"])
    llm.label_logprobs([warm], LABELS[:2])
    llm.complete([warm], max_tokens=4)
    label_t, gen_t, label_tokens, gen_tokens = [], [], [], []
    for history, candidates in lists:
        prompt = _render("rerank_listwise", history, candidates)
        started = time.perf_counter()
        llm.label_logprobs([prompt], LABELS[:len(candidates)])
        label_t.append(time.perf_counter() - started)
        label_tokens.append(len(tokenizer(prompt)["input_ids"]) + 1)
    for history, candidates in lists:  # other prompts than above: no prefix cache hits
        prompt = _render("rerank_generate", history[::-1], candidates[::-1])
        started = time.perf_counter()
        text = llm.complete([prompt], max_tokens=max_tokens)[0]
        gen_t.append(time.perf_counter() - started)
        gen_tokens.append(len(tokenizer(prompt)["input_ids"]) + len(tokenizer(text, add_special_tokens=False)
                                                                    ["input_ids"]))
    messages: list[Message] = [{"role": "user", "content": f"In one sentence, why watch {lists[0][1][0]}?"}]
    started = time.perf_counter()
    first = None
    for _ in llm.stream_chat(messages, max_tokens=32):
        if first is None:
            first = time.perf_counter() - started
    label, gen = _stats(label_t), _stats(gen_t)
    return {"label_logprobs": {**label, "tokens_per_request": round(float(np.mean(label_tokens)), 1)},
            "generate_ranking": {**gen, "tokens_per_request": round(float(np.mean(gen_tokens)), 1)},
            "p50_ratio_generate_over_labels": round(gen["p50_s"] / label["p50_s"], 1),
            "time_to_first_reply_token_s": round(first or float("nan"), 3)}


def bench_rerank(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    lists = _lists(settings, args.lists)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(settings.llm.model))
    out: dict[str, Any] = {"benchmark": "rerank", "lists": len(lists), "candidates": 20,
                           "generate_max_tokens": args.max_tokens}
    for backend in args.backends.split(","):
        config = settings.llm.model_copy(update={"backend": backend})
        process = None
        if backend in ("vllm", "openai") and not args.llm_url:
            from agent.llm.serve import ServeOptions, start_server

            port = 8399
            process = start_server(ServeOptions(model=settings.llm.model, port=port), timeout_s=900)
            config = config.model_copy(update={"url": f"http://127.0.0.1:{port}"})
        try:
            out[backend] = _one_backend(make_llm(config), lists, tokenizer, args.max_tokens)
        finally:
            if process is not None:
                from agent.llm.serve import stop_server

                stop_server(process)
    return out
