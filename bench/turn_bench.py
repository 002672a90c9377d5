"""A chat turn through the HTTP API at concurrency 1, 4 and 16: time to the first streamed token and
the full turn, split into retrieval, reranking and reply; against the bare LLM writing the same reply."""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from agent.dialogue import ConversationAgent
from agent.llm.backends import make_llm
from agent.llm.base import LLM
from agent.recommender import Recommender
from agent.settings import Settings
from prompts.loader import load_prompt

MESSAGES = ["A funny movie from the 90s", "Something like The Matrix", "An animated film for kids",
            "A tense thriller, nothing scary", "A romantic comedy", "Classic science fiction",
            "A crime drama", "An adventure for the weekend"]


def _p(values: list[float]) -> dict[str, float]:
    return {"p50_s": round(float(np.percentile(values, 50)), 3), "p95_s": round(float(np.percentile(values, 95)), 3)}


def _turn(base: str, n: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=600) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        started = time.perf_counter()
        first_token, timings = None, {}
        with http.stream("POST", f"/v1/conversations/{conversation}/messages",
                         json={"text": MESSAGES[n % len(MESSAGES)], "stream": True}) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "done":
                    timings = event["timings"]
                elif event["type"] == "delta" and first_token is None:
                    first_token = time.perf_counter() - started
        total = time.perf_counter() - started
    return {"ttft_s": first_token or total, "turn_s": total, **timings}


def _bare_reply(llm: LLM, recommender: Recommender, repeats: int) -> list[float]:
    """The reply prompt alone, straight to the LLM: the yardstick for the agent's overhead."""
    template = load_prompt("reply")
    seconds = []
    for n in range(repeats):
        items = recommender.candidates(query=MESSAGES[n % len(MESSAGES)], k=5)
        prompt = template.render(request=MESSAGES[n % len(MESSAGES)], items=[
            {"label": "ABCDE"[i], "title": c.title, "reason": "It matches."} for i, c in enumerate(items)])
        started = time.perf_counter()
        llm.complete([prompt], max_tokens=160, stop=["\n\n\n"])
        seconds.append(time.perf_counter() - started)
    return seconds


def _one_backend(settings: Settings, llm: LLM, levels: list[int]) -> dict[str, Any]:
    import uvicorn

    from ui.api import create_app

    recommender = Recommender.open(settings)
    recommender.llm = llm
    server = uvicorn.Server(uvicorn.Config(create_app(ConversationAgent(recommender)), host="127.0.0.1",
                                           port=8477, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    out: dict[str, Any] = {}
    try:
        _turn("http://127.0.0.1:8477", 0)  # warm up
        for level in levels:
            with ThreadPoolExecutor(level) as pool:
                results = list(pool.map(lambda n: _turn("http://127.0.0.1:8477", n), range(max(level, 3))))
            out[f"concurrency_{level}"] = {
                "turns": len(results), "time_to_first_token": _p([r["ttft_s"] for r in results]),
                "turn": _p([r["turn_s"] for r in results]),
                "split_mean_s": {k: round(float(np.mean([r.get(k, 0.0) for r in results])), 3)
                                 for k in ("retrieval_s", "rerank_s", "reply_s")}}
        bare = _p(_bare_reply(llm, recommender, 3))
        out["bare_llm_reply"] = bare
        out["overhead_ratio_p50_turn_at_1_over_bare_reply"] = round(
            out[f"concurrency_{levels[0]}"]["turn"]["p50_s"] / bare["p50_s"], 2)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return out


def bench_turn(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    levels = [1, 4, 16]
    out: dict[str, Any] = {"benchmark": "turn", "dataset": settings.data.dataset, "levels": levels,
                           "note": "each reply sentence streams once the LLM has written it and it passed the "
                                   "grounding check"}
    for backend in args.backends.split(","):
        config = settings.llm.model_copy(update={"backend": backend})
        process = None
        if backend in ("vllm", "openai") and not args.llm_url:
            from agent.llm.serve import ServeOptions, start_server

            process = start_server(ServeOptions(model=settings.llm.model, port=8398), timeout_s=900)
            config = config.model_copy(update={"url": "http://127.0.0.1:8398"})
        try:
            out[backend] = _one_backend(settings, make_llm(config), levels)
        finally:
            if process is not None:
                from agent.llm.serve import stop_server

                stop_server(process)
    return out
