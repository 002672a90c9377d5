"""The API under load with the in-process LLM, through a real `recagent serve`: 64 turns at once.

Every turn is answered or refused with 503 (never a 500 or a hang), /health answers 200 throughout, and
SIGTERM stops the server cleanly afterwards. How fast /health answers under this load is a benchmark figure,
not a test (`recagent bench health`, bench/health_bench.py): a timed assertion fails on a busy shared machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from agent.settings import Settings
from conftest import REPO, free_port

WATCH = """
import os, sys, time, httpx
url, out, stop = sys.argv[1], open(sys.argv[2], "w"), sys.argv[3]
while not os.path.exists(stop):
    started = time.perf_counter()
    try:
        httpx.get(url, timeout=60).raise_for_status()
        out.write(f"{time.perf_counter() - started}\\n")
    except httpx.HTTPError as exc:
        out.write(f"failed {exc!r}\\n")
    out.flush()
    time.sleep(0.2)
"""


def _turn(http: httpx.Client, n: int) -> tuple[int, str | None]:
    conversation = http.post("/v1/conversations", json={})
    if conversation.status_code != 201:
        return conversation.status_code, None
    reply = http.post(f"/v1/conversations/{conversation.json()['id']}/messages",
                      json={"text": f"Something fun for night {n}"})
    return reply.status_code, reply.headers.get("retry-after")


def test_sixty_four_turns_with_the_in_process_llm(small_index: Settings, model_folder: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECAGENT_LLM__TIMEOUT_S": "4", "RECAGENT_API__MAX_PENDING_TURNS": "8",
           "RECAGENT_API__TURN_WORKERS": "4", "RECAGENT_API__SHUTDOWN_GRACE_S": "5"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir",
                                str(small_index.data.data_dir), "--dataset", "movies-small", "--chroma-path",
                                str(small_index.index.path), "--llm-backend", "transformers", "--quiet"],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        # /health is polled from a process of its own, so the 64 client threads here do not delay it
        stop, record = tmp_path / "stop", tmp_path / "health.txt"
        watcher = subprocess.Popen([sys.executable, "-c", WATCH, f"{base}/health", str(record), str(stop)])
        try:
            time.sleep(1.0)
            limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
            with httpx.Client(base_url=base, timeout=120, limits=limits) as http, ThreadPoolExecutor(64) as pool:
                results = list(pool.map(lambda n: _turn(http, n), range(64)))
        finally:
            stop.touch()
            watcher.wait(timeout=30)
        rows = record.read_text().splitlines()
        failures = [row for row in rows if row.startswith("failed")]
        latencies = [float(row) for row in rows if not row.startswith("failed")]
        codes = [code for code, _ in results]
        print(f"64 turns: {codes.count(200)} answered, {codes.count(503)} refused with 503; /health p50 "
              f"{sorted(latencies)[len(latencies) // 2]:.3f} s, max {max(latencies):.3f} s over {len(latencies)} polls")
        assert set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 8 and codes.count(503) >= 1, codes
        assert all(retry for code, retry in results if code == 503)
        assert latencies and not failures, failures[:3]  # every poll answered 200, however slowly
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("the server did not stop within 30 s of SIGTERM") from None
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
