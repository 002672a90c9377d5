"""A loopback cluster, each part a real process: PostgreSQL (conversations), a Chroma server (vectors),
one vLLM server behind vllm-router, and two `recagent serve` processes sharing all three.

A conversation started on one API process continues on the other with its state; 32 conversations at
once, spread over both, have no errors and no cross-talk; an API process killed with SIGKILL mid-stream
loses no finished turn and leaves its conversation usable on the other process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.llm.base import LLMConfig
from conftest import REPO, free_port
from core.processes import stop_process, wait_http
from index.config import IndexConfig

DATASET = "cluster-movies"  # a namespace of its own in the session's Chroma server
GENRES = ["Comedy", "Drama", "Action", "Thriller", "Romance", "Adventure", "Crime", "Sci-Fi", "Fantasy",
          "Animation", "Children", "Mystery", "Horror", "War", "Musical", "Western"]


@pytest.fixture(scope="module")
def router(vllm_config: LLMConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vllm-router (the Rust router from the vllm-router wheel) in front of the session's vLLM server."""
    binary = shutil.which("vllm-router", path=str(Path(sys.executable).parent))
    assert binary, "vllm-router is not installed (pip install vllm-router)"
    port = free_port()
    log = tmp_path_factory.mktemp("router") / "router.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--worker-urls",
                                    vllm_config.url, "--policy", "round_robin", "--queue-timeout-secs", "600",
                                    "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                                    "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", process, log)
    yield url
    stop_process(process)


@dataclass
class Cluster:
    urls: list[str]
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]


@pytest.fixture(scope="module")
def cluster(small_data_dir: Path, chroma_server: IndexConfig, postgres_url: str, router: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("cluster-data")
    shutil.copytree(small_data_dir / "movies-small", data / DATASET)
    chroma = ["--chroma", "server", "--chroma-host", chroma_server.host, "--chroma-port", str(chroma_server.port)]
    built = subprocess.run([sys.executable, "-m", "app.cli", "index", "build", "--data-dir", str(data), "--dataset",
                            DATASET, *chroma, "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    env = {**os.environ, "RECAGENT_API__MAX_PENDING_TURNS": "32", "RECAGENT_LLM__TIMEOUT_S": "300",
           "RECAGENT_REPLY__MAX_TOKENS": "48", "RECAGENT_RERANK__CANDIDATES": "10", "HF_HUB_OFFLINE": "1"}
    urls, processes, logs = [], [], []
    for n in range(2):
        port = free_port()
        log = tmp_path_factory.mktemp(f"serve{n}") / "serve.log"
        with log.open("wb") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir", str(data), "--dataset",
                 DATASET, *chroma, "--store", postgres_url, "--llm-backend", "vllm", "--llm-url", router, "--quiet"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}")
        logs.append(log)
    for url, process, log in zip(urls, processes, logs, strict=True):
        wait_http(url + "/health", process, log)
    yield Cluster(urls, processes, logs)
    for process in processes:
        stop_process(process)


def _send(base: str, conversation: str, text: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/conversations/{conversation}/messages", json={"text": text}, timeout=600)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _state(base: str, conversation: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/v1/conversations/{conversation}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_conversation_continues_on_the_other_process(cluster: Cluster) -> None:
    one, two = cluster.urls
    conversation = httpx.post(f"{one}/v1/conversations", json={}, timeout=30).json()["id"]
    first = _send(one, conversation, "Something funny from the 90s, nothing scary")
    # chat turns skip the reranker (rerank.in_conversations); the reply is the LLM's, through the router: its
    # sentences, or none that passed the claim check, which is no failure to reach it
    assert first["reranked_by"] == "retriever", first
    assert first["reply_by"] == "llm" or "could not be grounded" in (first["fallback_reason"] or ""), first
    assert _state(two, conversation) == _state(one, conversation)
    second = _send(two, conversation, "I loved Toy Story. More please")
    state = _state(one, conversation)
    assert [t["role"] for t in state["turns"]] == ["user", "assistant"] * 2
    assert state["include"] == {"genres": ["Comedy"]} and state["exclude"] == {"genres": ["Horror"]}
    assert "1" in state["liked"] and (state["year_min"], state["year_max"]) == (1990, 1999)
    for item in second["items"]:  # the constraints set on process one hold on process two
        assert "Comedy" in item["attributes"]["genres"] and "Horror" not in item["attributes"]["genres"]
        assert 1990 <= item["attributes"]["year"] <= 1999


def test_thirty_two_conversations_over_both_processes(cluster: Cluster) -> None:
    def one_conversation(n: int) -> tuple[int, float, str, dict[str, Any], dict[str, Any]]:
        base, other = cluster.urls[n % 2], cluster.urls[(n + 1) % 2]
        genre = GENRES[n % len(GENRES)]
        conversation = httpx.post(f"{base}/v1/conversations", json={}, timeout=60).json()["id"]
        started = time.perf_counter()
        reply = httpx.post(f"{base}/v1/conversations/{conversation}/messages",
                           json={"text": f"Something {genre.lower()} please (request {n})"}, timeout=900)
        elapsed = time.perf_counter() - started
        return reply.status_code, elapsed, genre, reply.json(), _state(other, conversation)

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one_conversation, range(32)))
    wall = time.perf_counter() - started
    seconds = sorted(r[1] for r in results)
    print(f"32 conversations over 2 API processes, one vLLM behind vllm-router: wall {wall:.1f} s, turn p50 "
          f"{statistics.median(seconds):.1f} s, p95 {seconds[int(0.95 * 31)]:.1f} s; "
          f"reranked by the LLM: {sum(r[3].get('reranked_by') == 'llm' for r in results)}/32")
    assert [r[0] for r in results] == [200] * 32, [r[3] for r in results if r[0] != 200][:2]
    for n, (_, _, genre, reply, state) in enumerate(results):
        assert state["include"] == {"genres": [genre]}, (n, state["include"])  # no cross-talk
        assert state["turns"][0]["text"] == f"Something {genre.lower()} please (request {n})"
        assert [t["role"] for t in state["turns"]] == ["user", "assistant"]
        assert state["turns"][1]["items"] == [i["id"] for i in reply["items"]]
        assert all(genre in i["attributes"]["genres"] for i in reply["items"])
        # reached and answered: a reply whose sentences the claim check all refused is the only fallback allowed
        assert not reply["fallback"] or "could not be grounded" in reply["fallback_reason"], reply["fallback_reason"]


def test_a_process_killed_mid_stream_loses_no_finished_turn(cluster: Cluster) -> None:
    one, two = cluster.urls
    conversation = httpx.post(f"{one}/v1/conversations", json={}, timeout=30).json()["id"]
    _send(one, conversation, "An animated movie for kids")
    finished = _state(one, conversation)["turns"]
    events = []
    with httpx.stream("POST", f"{one}/v1/conversations/{conversation}/messages",
                      json={"text": "Something with adventure, nothing sad", "stream": True}, timeout=600) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "items":
                    cluster.processes[0].send_signal(signal.SIGKILL)  # mid-stream: items sent, reply not done
                    break
    assert cluster.processes[0].wait(timeout=30) == -signal.SIGKILL
    assert events and events[-1]["type"] == "items"
    kept = _state(two, conversation)["turns"]
    assert kept[:2] == finished and len(kept) in (2, 4)  # the finished turn is there; the killed one whole or not
    started = time.perf_counter()
    _send(two, conversation, "Something funny instead")  # not locked by the dead process
    waited = time.perf_counter() - started
    print(f"after SIGKILL mid-stream: {len(kept) // 2} turn(s) kept, the next turn on the other process took "
          f"{waited:.1f} s")
    assert [t["role"] for t in _state(two, conversation)["turns"]] == ["user", "assistant"] * (len(kept) // 2 + 1)
