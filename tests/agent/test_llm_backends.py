"""Both LLM backends on the real default model; the vLLM one against a real server on loopback."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.llm.backends import make_llm
from agent.llm.base import LLMConfig, LLMError, LLMUnavailable, shipped_adapters
from agent.llm.serve import ServeOptions, lora_rank, server_command, serving
from agent.rerank import RerankInput, build_prompts
from conftest import free_port
from core.labels import LABELS
from prompts.loader import load_prompt

HISTORIES = [
    (["Toy Story (1995)", "Aladdin (1992)", "Lion King, The (1994)"],
     ["Heat (1995)", "Toy Story 2 (1999)", "Casino (1995)", "Beauty and the Beast (1991)", "Se7en (1995)",
      "Mulan (1998)", "Alien (1979)", "Hercules (1997)"]),
    (["Alien (1979)", "Aliens (1986)", "Terminator, The (1984)", "Predator (1987)"],
     ["Notting Hill (1999)", "Terminator 2: Judgment Day (1991)", "Babe (1995)", "Matrix, The (1999)",
      "Sense and Sensibility (1995)", "Total Recall (1990)", "Clueless (1995)", "RoboCop (1987)",
      "Emma (1996)", "Blade Runner (1982)", "Jumanji (1995)", "Star Wars: Episode IV - A New Hope (1977)"]),
]


def _prompts() -> tuple[list[str], list[tuple[str, ...]]]:
    template = load_prompt("rerank_listwise", 2)
    prompts, labels = [], []
    for history, candidates in HISTORIES:
        item = RerankInput(history, [(str(i), t, "") for i, t in enumerate(candidates)])
        built, _ = build_prompts(item, template, count=1, noun="movie")
        prompts += built
        labels.append(LABELS[:len(candidates)])
    return prompts, labels


def test_transformers_label_logprobs_are_a_distribution(transformers_llm: Any) -> None:
    prompts, labels = _prompts()
    for prompt, wanted in zip(prompts, labels, strict=True):
        scores = transformers_llm.label_logprobs([prompt], wanted)[0]
        assert set(scores) == set(wanted)
        assert all(v <= 0 for v in scores.values())
        assert np.logaddexp.reduce(list(scores.values())) <= 1e-6


def test_vllm_and_transformers_agree_on_label_order(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    served = make_llm(vllm_config)
    prompts, labels = _prompts()
    for prompt, wanted in zip(prompts, labels, strict=True):
        local = transformers_llm.label_logprobs([prompt], wanted)[0]
        remote = served.label_logprobs([prompt], wanted)[0]
        assert len(remote) == len(wanted), "every label should be in the server's top logprobs"
        local_order = sorted(wanted, key=lambda label: -local[label])
        remote_order = sorted(wanted, key=lambda label: -remote[label])
        assert local_order == remote_order
        assert max(abs(local[label] - remote[label]) for label in wanted) < 0.05


def _continuations() -> list[tuple[str, list[str]]]:
    template = load_prompt("rerank_sequence")
    return [(template.render(noun="movie", history=history), [f" {title};" for title in candidates])
            for history, candidates in HISTORIES]


def test_continuation_logprobs_equal_whole_sequences(transformers_llm: Any) -> None:
    """The shared prefix cache gives what scoring each prefix + continuation on its own gives."""
    import torch

    tokenizer, model = transformers_llm.tokenizer, transformers_llm.model
    one_token = ("A movie lover's movies, in the order they came:", [" the", " a", " and"])  # no second pass
    for prefix, continuations in [*_continuations(), one_token]:
        shared = transformers_llm.continuation_logprobs(prefix, continuations)
        start = len(tokenizer(prefix).input_ids)
        for continuation, (total, count) in zip(continuations, shared, strict=True):
            ids = tokenizer(prefix + continuation, return_tensors="pt").input_ids
            assert ids.shape[1] - start == count  # the prefix's tokens, then the continuation's
            base = model.disable_adapter() if transformers_llm.adapters else contextlib.nullcontext()
            with base, torch.inference_mode():  # the base model, as continuation_logprobs without an adapter
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            whole = sum(float(logprobs[t - 1, ids[0, t]]) for t in range(start, ids.shape[1]))
            assert total < 0 and abs(total - whole) < 1e-3 * max(1.0, abs(whole)), (continuation, total, whole)
    with pytest.raises(LLMError):
        transformers_llm.continuation_logprobs("", [" Heat (1995);"])
    assert transformers_llm.continuation_logprobs("A movie lover's movies", []) == []


def test_vllm_and_transformers_agree_on_continuations(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    served = make_llm(vllm_config)
    for prefix, continuations in _continuations():
        local = transformers_llm.continuation_logprobs(prefix, continuations)
        remote = served.continuation_logprobs(prefix, continuations)
        assert [n for _, n in local] == [n for _, n in remote]  # the same tokens on both sides
        mean_local, mean_remote = [t / n for t, n in local], [t / n for t, n in remote]
        assert np.argsort(mean_local).tolist() == np.argsort(mean_remote).tolist()
        assert max(abs(a - b) for a, b in zip(mean_local, mean_remote, strict=True)) < 0.05


def test_batched_scores_equal_single_requests(vllm_config: LLMConfig) -> None:
    served = make_llm(vllm_config)
    prompts, _labels = _prompts()
    batched = served.label_logprobs(prompts, LABELS)
    for prompt, row in zip(prompts, batched, strict=True):
        single = served.label_logprobs([prompt], LABELS)[0]
        assert set(single) == set(row)
        assert all(abs(single[k] - row[k]) < 1e-3 for k in row)


def test_greedy_completion_matches_across_backends(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    prompt = ["Toy Story is a 1995 American animated film produced by"]
    local = transformers_llm.complete(prompt, max_tokens=8)[0]
    remote = make_llm(vllm_config).complete(prompt, max_tokens=8)[0]
    assert local.strip() and remote.strip()
    assert local.split()[:3] == remote.split()[:3]


def test_streamed_completion_equals_the_whole(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    prompt = "Toy Story is a 1995 American animated film produced by"
    for llm in (transformers_llm, make_llm(vllm_config)):
        pieces = list(llm.stream_complete(prompt, max_tokens=12))
        assert len(pieces) >= 2
        assert "".join(pieces) == llm.complete([prompt], max_tokens=12)[0]


def test_sampled_completion_is_seeded_and_varies(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    prompt = "My favourite films are"
    greedy = transformers_llm.complete([prompt], max_tokens=16)[0]
    original = transformers_llm.config

    def local(seed: int) -> str:
        transformers_llm.config = original.model_copy(update={"temperature": 1.0, "seed": seed})
        try:
            return str(transformers_llm.complete([prompt], max_tokens=16)[0])
        finally:
            transformers_llm.config = original

    def remote(seed: int) -> str:
        return make_llm(vllm_config.model_copy(update={"temperature": 1.0, "seed": seed})).complete(
            [prompt], max_tokens=16)[0]

    for sample in (local, remote):
        texts = [sample(seed) for seed in range(4)]
        assert sample(2) == texts[2]  # the same seed, the same text
        assert len(set(texts)) >= 2 and any(t != greedy for t in texts), texts
    assert transformers_llm.complete([prompt], max_tokens=16)[0] == greedy  # greedy again at temperature 0


def test_streamed_chat_from_both_backends(vllm_config: LLMConfig, transformers_llm: Any) -> None:
    messages = [{"role": "user", "content": "Name a film like Toy Story."}]
    for llm in (transformers_llm, make_llm(vllm_config)):
        pieces = list(llm.stream_chat(messages, max_tokens=16))
        assert len(pieces) >= 2 and "".join(pieces).strip()


def test_server_down_is_unavailable_not_a_hang() -> None:
    llm = make_llm(LLMConfig(backend="vllm", url=f"http://127.0.0.1:{free_port()}", timeout_s=5))
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        llm.label_logprobs(["x"], ["A"])
    assert time.monotonic() - started < 5


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "slow"

    def do_POST(self) -> None:
        if self.mode == "slow":
            time.sleep(3)
        body = b"<html>not json</html>" if self.mode == "garbage" else b'{"choices": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def bad_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_slow_and_garbage_servers(bad_server: tuple[str, type[_Handler]]) -> None:
    url, handler = bad_server
    llm = make_llm(LLMConfig(backend="vllm", url=url, timeout_s=0.5))
    with pytest.raises(LLMUnavailable, match=r"did not answer within 0\.5 s"):
        llm.complete(["x"])
    handler.mode = "garbage"
    with pytest.raises(LLMError, match="not JSON"):
        llm.complete(["x"])
    handler.mode = "empty"
    with pytest.raises(LLMError, match="expected 1 choices"):
        llm.label_logprobs(["x"], ["A"])


def test_serve_command_accepts_lora(model_folder: Any) -> None:
    command = server_command(ServeOptions(lora_modules=["recs=/adapters/recs"], port=9000, dtype="bfloat16"))
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-lora" in command and "recs=/adapters/recs" in command
    assert command[command.index("--model") + 1] == str(model_folder)
    assert command[command.index("--max-logprobs") + 1] == "300"
    assert command[command.index("--dtype") + 1] == "bfloat16"
    assert command[command.index("--max-lora-rank") + 1] == "16"  # a folder it cannot read: the default


def test_serve_command_sizes_lora_buffers_by_the_adapters_ranks(tmp_path: Path) -> None:
    """The shipped adapters are r=8: the server is started with --max-lora-rank 8, not the default 16; a
    rank vLLM does not offer rounds up to one it does, and an explicit rank wins. (A model folder of its own:
    the default one would be converted from the GGUF first, and the model is not what is tested here.)"""
    model = str(tmp_path / "model")
    shipped = [f"{name}={folder}" for name, folder in shipped_adapters().items() if name in ("adapt", "rerank")]
    assert lora_rank(shipped) == 8
    command = server_command(ServeOptions(model=model, lora_modules=shipped))
    start = command.index("--enable-lora")
    assert command[start:start + 6] == ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "2", "--lora-modules"]
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 24}}))
    assert lora_rank([*shipped, f"wide={wide}"]) == 32
    assert lora_rank([f"bad={tmp_path}"]) == 16
    command = server_command(ServeOptions(model=model, lora_modules=shipped, max_lora_rank=64))
    assert command[command.index("--max-lora-rank") + 1] == "64"


def test_serving_starts_nothing_for_an_in_process_or_external_llm() -> None:
    """Benchmarks run their own server only for a served backend without --llm-url; otherwise the config
    passes through as it is (no server, no new URL)."""
    local = LLMConfig(backend="transformers")
    with serving(local, 9001) as config:
        assert config is local
    external = LLMConfig(backend="vllm", url="http://127.0.0.1:9002", dtype="bfloat16")
    with serving(external, 9001, own=False) as config:
        assert config.url == "http://127.0.0.1:9002"


def test_unknown_backend() -> None:
    """The backend is a closed choice: a typo is an error that names the setting and the choices."""
    from agent.settings import load_settings
    from core.errors import SettingsError

    choices = "'transformers', 'vllm', 'openai' or 'none'"
    with pytest.raises(SettingsError, match=rf"llm\.backend: Input should be {choices}"):
        load_settings(environ={"RECAGENT_LLM__BACKEND": "llamacpp"})
