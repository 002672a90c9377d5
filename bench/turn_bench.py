"""A chat turn through the HTTP API at concurrency 1, 4 and 16: time to the item cards, to the first streamed
reply sentence and the full turn, split into retrieval, reranking and reply; against the bare LLM writing the
same reply.

With --api-processes 1,2 the same load runs through that many real `recagent serve` processes instead
(round robin), deployed as in the README: one vLLM server, a Chroma server over the built index, one
conversation database; the same LLM and the same turns for every count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from agent.assemble import Agent, build_agent, make_configured_llm, ready_to_serve
from agent.events import Recommendation
from agent.llm.serve import serving
from agent.settings import Settings
from core.processes import free_port, stop_process, wait_http

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


def _level(bases: list[str], level: int) -> dict[str, Any]:
    """max(level, one per message) turns, `level` at once, each on bases[n % len(bases)]."""
    started = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        results = list(pool.map(lambda n: _turn(bases[n % len(bases)], n), range(max(level, len(MESSAGES)))))
    wall = time.perf_counter() - started
    return {"turns": len(results), "wall_s": round(wall, 2), "turns_per_s": round(len(results) / wall, 3),
            "time_to_items": _p([r["items_s"] for r in results]),
            "time_to_first_token": _p([r["ttft_s"] for r in results]),
            "turn": _p([r["turn_s"] for r in results]),
            "llm_replies": sum(r["reply_by"] == "llm" for r in results),
            "split_mean_s": {k: round(float(np.mean([r.get(k, 0.0) for r in results])), 3)
                             for k in ("retrieval_s", "rerank_s", "reply_s")}}


def _one_backend(agent: Agent, levels: list[int]) -> dict[str, Any]:
    import uvicorn

    from ui.api import create_app

    ready_to_serve(agent)  # as `recagent serve` does before its first request
    server = uvicorn.Server(uvicorn.Config(create_app(agent), host="127.0.0.1", port=8477, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    out: dict[str, Any] = {"agent": agent.describe()}
    try:
        _turn("http://127.0.0.1:8477", 0)  # warm up
        for level in levels:
            out[f"concurrency_{level}"] = _level(["http://127.0.0.1:8477"], level)
        bare = _p(_bare_reply(agent, 3))
        out["bare_llm_reply"] = bare
        out["overhead_ratio_p50_turn_at_1_over_bare_reply"] = round(
            out[f"concurrency_{levels[0]}"]["turn"]["p50_s"] / bare["p50_s"], 2)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return out


def _api_processes(settings: Settings, llm_url: str, counts: list[int], levels: list[int]) -> dict[str, Any]:
    """The same turns through 1, 2, ... `recagent serve` processes sharing one vLLM server, one Chroma server
    (over the embedded index folder, built first) and one SQLite conversation database (WAL)."""
    build_agent(settings, llm=None)  # builds the index if it is missing or stale
    work = Path(tempfile.mkdtemp(prefix="bench-turn-"))
    chroma_bin = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    chroma_port, started = free_port(), []
    log = work / "chroma.log"
    with log.open("wb") as out:
        chroma = subprocess.Popen([chroma_bin, "run", "--path", str(settings.index.path), "--host", "127.0.0.1",
                                   "--port", str(chroma_port)], stdout=out, stderr=subprocess.STDOUT)
    started.append(chroma)
    result: dict[str, Any] = {}
    try:
        wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", chroma, log, 120)
        env = {**os.environ, "RECAGENT_API__MAX_PENDING_TURNS": str(max(levels)), "HF_HUB_OFFLINE": "1"}
        for count in counts:
            store = f"sqlite:///{work / f'conversations-{count}.sqlite3'}"
            serves, bases = [], []
            for n in range(count):
                port, log = free_port(), work / f"serve-{count}-{n}.log"
                with log.open("wb") as out:
                    serves.append((subprocess.Popen(
                        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir",
                         str(settings.data.data_dir), "--dataset", settings.data.dataset, "--chroma", "server",
                         "--chroma-port", str(chroma_port), "--store", store, "--llm-backend", "vllm",
                         "--llm-url", llm_url, "--quiet"], env=env, stdout=out, stderr=subprocess.STDOUT), log))
                bases.append(f"http://127.0.0.1:{port}")
            try:
                for base, (process, log) in zip(bases, serves, strict=True):
                    wait_http(base + "/health", process, log)
                for base in bases:
                    _turn(base, 0)  # warm up every process
                _level(bases, max(levels))  # unmeasured: every count meets vLLM's prefix cache warmed alike
                result[f"api_processes_{count}"] = {f"concurrency_{level}": _level(bases, level)
                                                    for level in levels}
            finally:
                for process, _ in serves:
                    stop_process(process)
    finally:
        stop_process(chroma)
        shutil.rmtree(work, ignore_errors=True)
    return result


def bench_turn(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(x) for x in args.levels.split(",")]
    counts = [int(x) for x in args.api_processes.split(",")] if args.api_processes else []
    out: dict[str, Any] = {"benchmark": "turn", "dataset": settings.data.dataset, "levels": levels,
                           "note": "each reply sentence streams once the LLM has written it and it passed the "
                                   "grounding check"}
    base = None if counts else build_agent(settings, llm=None)
    for backend in ["vllm"] if counts else args.backends.split(","):
        configured = settings.llm.model_copy(update={"backend": backend})
        with serving(configured, 8398, own=not args.llm_url) as config:
            if counts:
                out[backend] = _api_processes(settings, str(config.url), counts, levels)
                continue
            assert base is not None
            served = settings.model_copy(update={"llm": config})  # so the agent describes the backend it uses
            agent = build_agent(served, llm=make_configured_llm(served), index=base.index, encoder=base.encoder)
            out[backend] = _one_backend(agent, levels)
    return out
