"""/health of a real `recagent serve` while chat turns run, against a bare loopback HTTP endpoint polled at the
same moments: what the server's own work adds to a liveness probe on this machine. tests/ui/test_load.py checks
that /health answers under load; this says how fast.

One process of its own polls both URLs alternately with http.client (a new connection each time, as a probe
does), idle first and then while `level` turns run at once, for each of --levels. The bare endpoint is a
stdlib HTTP server in another process: it shares the machine's load with the server but none of its work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from agent.assemble import index_named_dataset
from agent.llm.serve import serving
from agent.settings import Settings
from core.processes import free_port, stop_process, wait_http

IDLE_S = 5.0

BARE = """
import http.server, sys

class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""

POLL = """
import http.client, os, sys, time
from urllib.parse import urlsplit
targets = [("health", urlsplit(sys.argv[1])), ("bare", urlsplit(sys.argv[2]))]
out, stop = open(sys.argv[3], "w"), sys.argv[4]
while not os.path.exists(stop):
    for name, url in targets:
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
            connection.request("GET", url.path or "/")
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
            connection.close()
        except OSError:
            ok = False
        out.write(f"{name} {time.perf_counter() - started if ok else 'failed'}\\n")
        out.flush()
    time.sleep(0.1)
"""


def _latencies(rows: list[str], name: str) -> dict[str, Any]:
    values = [row.split()[1] for row in rows if row.startswith(name + " ")]
    ms = [1000 * float(v) for v in values if v != "failed"]
    summary: dict[str, Any] = {"polls": len(values), "failed": len(values) - len(ms)}
    if ms:
        summary.update({f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95)})
        summary["max_ms"] = round(max(ms), 2)
    return summary


def _turn(base: str, n: int) -> int:
    with httpx.Client(base_url=base, timeout=600) as http:
        created = http.post("/v1/conversations", json={})
        if created.status_code != 201:
            return created.status_code
        return http.post(f"/v1/conversations/{created.json()['id']}/messages",
                         json={"text": f"Something fun for night {n}"}).status_code


def _phase(base: str, bare: str, level: int, work: Path) -> dict[str, Any]:
    """Poll both endpoints while `level` turns run at once (for IDLE_S seconds when level is 0)."""
    record, stop = work / f"poll-{level}.txt", work / f"stop-{level}"
    poller = subprocess.Popen([sys.executable, "-c", POLL, f"{base}/health", bare, str(record), str(stop)])
    started = time.perf_counter()
    try:
        time.sleep(1.0)  # the poller is up before the load starts
        if level:
            with ThreadPoolExecutor(level) as pool:
                codes = list(pool.map(lambda n: _turn(base, n), range(level)))
        else:
            time.sleep(IDLE_S)
            codes = []
    finally:
        stop.touch()
        poller.wait(timeout=120)
    rows = record.read_text().splitlines()
    health, baseline = _latencies(rows, "health"), _latencies(rows, "bare")
    out: dict[str, Any] = {"turns": level, "answered": codes.count(200), "refused_503": codes.count(503),
                           "other_status": sorted(c for c in codes if c not in (200, 503)),
                           "wall_s": round(time.perf_counter() - started, 2), "health": health, "bare": baseline}
    if "p95_ms" in health and "p95_ms" in baseline:
        out["p95_health_over_bare"] = round(health["p95_ms"] / max(baseline["p95_ms"], 1e-3), 2)
    return out


def _serve_flags(settings: Settings, args: argparse.Namespace, llm_backend: str, llm_url: str | None) -> list[str]:
    """The flags that give `recagent serve` the benchmark's own settings (RECAGENT_* reach it as they are)."""
    index = settings.index
    flags = ["--data-dir", str(settings.data.data_dir), "--dataset", settings.data.dataset, "--chroma", index.chroma,
             "--llm-backend", llm_backend, "--quiet"]
    flags += ["--chroma-path", str(index.path)] if index.chroma == "embedded" else [
        "--chroma-host", index.host, "--chroma-port", str(index.port)]
    for flag, value in (("--config", args.config), ("--llm-url", llm_url), ("--llm-model", args.llm_model)):
        if value:
            flags += [flag, str(value)]
    return flags + (["--no-adapters"] if args.no_adapters else [])


def bench_health(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-health-"))
    out: dict[str, Any] = {"benchmark": "health", "dataset": settings.data.dataset, "levels": levels,
                           "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    index_named_dataset(settings, progress=False)  # as `recagent index build`: nothing to do if it is current
    bare_port, port = free_port(), free_port()
    bare_log = work / "bare.log"
    with bare_log.open("wb") as sink:
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        with serving(settings.llm, free_port(), own=not args.llm_url) as llm:
            log = work / "serve.log"
            flags = _serve_flags(settings, args, llm.backend, llm.url)
            with log.open("wb") as sink:
                server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), *flags,
                                           "--store", f"sqlite:///{work / 'conversations.sqlite3'}"],
                                          stdout=sink, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_http(f"{base}/health", server, log, 900)
                wait_http(f"http://127.0.0.1:{bare_port}/", bare, bare_log, 60)
                out["llm_backend"] = llm.backend
                _turn(base, 0)  # warm up: the first turn loads what the others reuse
                out["idle"] = _phase(base, f"http://127.0.0.1:{bare_port}/", 0, work)
                for level in levels:
                    out[f"turns_{level}"] = _phase(base, f"http://127.0.0.1:{bare_port}/", level, work)
            finally:
                stop_process(server)
    finally:
        stop_process(bare)
        shutil.rmtree(work, ignore_errors=True)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
