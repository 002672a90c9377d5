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

from agent.assemble import Agent, build_agent, make_configured_llm
from agent.events import Recommendation
from agent.settings import Settings

MESSAGES = ["A funny movie from the 90s", "Something like The Matrix", "An animated film for kids",
            "A tense thriller, nothing scary", "A romantic comedy", "Classic science fiction",
            "A crime drama", "An adventure for the weekend"]


def _p(values: list[float]) -> dict[str, float]:
    return {"p50_s": round(float(np.percentile(values, 50)), 3), "p95_s": round(float(np.percentile(values, 95)), 3)}


def _turn(base: str, n: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=600) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        started = time.perf_counter()
        first_token, items_at, timings, reply_by = None, None, {}, "template"
        with http.stream("POST", f"/v1/conversations/{conversation}/messages",
                         json={"text": MESSAGES[n % len(MESSAGES)], "stream": True}) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "items" and items_at is None:
                    items_at = time.perf_counter() - started
                elif event["type"] == "done":
                    timings, reply_by = event["timings"], event["reply_by"]
                elif event["type"] == "delta" and first_token is None:
                    first_token = time.perf_counter() - started
        total = time.perf_counter() - started
    return {"items_s": items_at or total, "ttft_s": first_token or total, "turn_s": total, "reply_by": reply_by,
            **timings}


def _bare_reply(agent: Agent, repeats: int) -> list[float]:
    """The reply prompt alone, straight to the LLM (with the reply adapter): the yardstick for the
    agent's overhead."""
    replier, llm = agent.pipeline.replier, agent.llm
    assert replier is not None and llm is not None
    seconds = []
    for n in range(repeats):
        message = MESSAGES[n % len(MESSAGES)]
        found = agent.recommender.candidates(query=message, k=5)
        items = [Recommendation(id=c.id, title=c.title, score=c.score, reason="It matches.") for c in found]
        _, prompt = replier.prompt(message, items)
        started = time.perf_counter()
        llm.complete([prompt], max_tokens=replier.max_tokens, stop=["\n\n\n"], adapter=replier.adapter)
        seconds.append(time.perf_counter() - started)
    return seconds


def _one_backend(agent: Agent, levels: list[int]) -> dict[str, Any]:
    import uvicorn

    from ui.api import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(agent), host="127.0.0.1", port=8477, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    out: dict[str, Any] = {"agent": agent.describe()}
    try:
        _turn("http://127.0.0.1:8477", 0)  # warm up
        for level in levels:
            with ThreadPoolExecutor(level) as pool:
                results = list(pool.map(lambda n: _turn("http://127.0.0.1:8477", n), range(max(level, 3))))
            out[f"concurrency_{level}"] = {
                "turns": len(results), "time_to_items": _p([r["items_s"] for r in results]),
                "time_to_first_token": _p([r["ttft_s"] for r in results]),
                "turn": _p([r["turn_s"] for r in results]),
                "llm_replies": sum(r["reply_by"] == "llm" for r in results),
                "split_mean_s": {k: round(float(np.mean([r.get(k, 0.0) for r in results])), 3)
                                 for k in ("retrieval_s", "rerank_s", "reply_s")}}
        bare = _p(_bare_reply(agent, 3))
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
    base = build_agent(settings, llm=None)
    for backend in args.backends.split(","):
        config = settings.llm.model_copy(update={"backend": backend})
        process = None
        if backend in ("vllm", "openai") and not args.llm_url:
            from agent.llm.serve import ServeOptions, start_server

            process = start_server(ServeOptions(model=settings.llm.model, port=8398, model_cache=config.model_cache,
                                                lora_modules=[f"{n}={f}" for n, f in config.adapters.items()]),
                                   timeout_s=900)
            config = config.model_copy(update={"url": "http://127.0.0.1:8398"})
        try:
            agent = build_agent(settings, llm=make_configured_llm(settings.model_copy(update={"llm": config})),
                                index=base.index, encoder=base.encoder)
            out[backend] = _one_backend(agent, levels)
        finally:
            if process is not None:
                from agent.llm.serve import stop_server

                stop_server(process)
    return out
