"""Child processes that serve HTTP (Chroma, `recagent serve`, vllm-router) for benchmarks and tests:
wait until one answers, stop one politely."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.errors import Unavailable


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 300) -> None:
    """Return once `url` answers 200; if the process exits or the time runs out, kill it and raise
    Unavailable with the end of its log."""
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise Unavailable(f"{url} did not come up; the end of {log}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL after `grace_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
