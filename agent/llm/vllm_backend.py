"""An OpenAI-compatible HTTP client: a vLLM server, or any other server speaking the same API."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from agent.llm.base import LLMConfig, LLMError, LLMUnavailable, Message
from agent.llm.model_files import DEFAULT_MODEL, SERVED_NAME


class OpenAICompatibleLLM:
    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.name = config.served_model or (SERVED_NAME if config.model == DEFAULT_MODEL
                                            else os.path.basename(config.model.rstrip("/")) or config.model)
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = httpx.Client(base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers)
        self.supports_json_schema = config.backend == "vllm"  # structured outputs (xgrammar / llguidance)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.post(path, json=body)
        except httpx.TimeoutException:
            raise LLMUnavailable(f"{self.config.url}{path} did not answer within {self.config.timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise LLMUnavailable(f"cannot reach the LLM server at {self.config.url}: {exc}") from None
        if response.status_code >= 400:
            raise LLMUnavailable(f"{self.config.url}{path} answered {response.status_code}: "
                                 f"{response.text[:300]}")
        try:
            data = response.json()
        except json.JSONDecodeError:
            raise LLMError(f"{self.config.url}{path} answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise LLMError(f"{self.config.url}{path} answered with unexpected JSON")
        return data

    def health(self) -> bool:
        try:
            return self.client.get("/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def _model(self, adapter: str | None) -> str:
        """The served model to ask: a LoRA adapter is served under its own name (`llm serve` does that)."""
        return adapter if adapter is not None else self.name

    def _sampling(self) -> dict[str, Any]:
        """Greedy, or the configured temperature with a seed (vLLM then samples reproducibly per request)."""
        c = self.config
        return {"temperature": c.temperature, **({"top_p": c.top_p, "seed": c.seed} if c.temperature > 0 else {})}

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        body = {"model": self._model(adapter), "prompt": list(prompts), "max_tokens": max_tokens, **self._sampling()}
        if stop:
            body["stop"] = list(stop)
        data = self._post("/v1/completions", body)
        return [choice.get("text", "") for choice in _choices(data, len(prompts))]

    def complete_json(self, prompt: str, schema: dict[str, Any], max_tokens: int = 96,
                      adapter: str | None = None) -> str:
        """A greedy completion decoded under a JSON schema (vLLM's structured outputs): the text is JSON of that
        schema unless the token limit cut it off."""
        body = {"model": self._model(adapter), "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
                "structured_outputs": {"json": schema}}
        data = self._post("/v1/completions", body)
        return str(_choices(data, 1)[0].get("text", ""))

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        """One request for all prompts (the server batches them), one generated token each."""
        body = {"model": self._model(adapter), "prompt": list(prompts), "max_tokens": 1, "temperature": 0.0,
                "logprobs": self.config.max_logprobs}
        data = self._post("/v1/completions", body)
        wanted = set(labels)
        out = []
        for choice in _choices(data, len(prompts)):
            top = ((choice.get("logprobs") or {}).get("top_logprobs") or [{}])[0] or {}
            scores: dict[str, float] = {}
            for token, value in top.items():
                if token in wanted and isinstance(value, (int, float)) and math.isfinite(value):
                    scores[token] = max(float(value), scores.get(token, -math.inf))
            out.append(scores)
        return out

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        """One request, one prompt per continuation, echoed with its tokens' log-probabilities (the OpenAI
        completions API's `echo`); the tokens from the prefix's end on are the continuation's. (vLLM reads
        no prefix cache for prompt log-probabilities, so each prompt is computed whole.)"""
        if not continuations:
            return []
        body = {"model": self._model(adapter), "prompt": [prefix + c for c in continuations], "max_tokens": 1,
                "temperature": 0.0, "echo": True, "logprobs": 0}
        data = self._post("/v1/completions", body)
        start = len(prefix)
        out = []
        for choice, continuation in zip(_choices(data, len(continuations)), continuations, strict=True):
            logprobs = choice.get("logprobs") or {}
            offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
            end = start + len(continuation)
            picked = [v for o, v in zip(offsets, values, strict=False) if isinstance(o, int) and start <= o < end]
            if not picked or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in picked):
                raise LLMError(f"{self.config.url} returned no log-probabilities for the continuation "
                               f"{continuation!r} (a server without `echo` support?)")
            out.append((float(sum(picked)), len(picked)))
        return out

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        body: dict[str, Any] = {"model": self._model(adapter), "prompt": prompt, "max_tokens": max_tokens,
                                **self._sampling(), "stream": True}
        if stop:
            body["stop"] = list(stop)
        yield from self._stream("/v1/completions", body, lambda choice: choice.get("text"))

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        body = {"model": self.name, "messages": list(messages), "max_tokens": max_tokens, **self._sampling(),
                "stream": True}
        yield from self._stream("/v1/chat/completions", body,
                                lambda choice: (choice.get("delta") or {}).get("content"))

    def _stream(self, path: str, body: dict[str, Any], text_of: Callable[[dict[str, Any]], Any]) -> Iterator[str]:
        """Server-sent events of an OpenAI-style streamed completion, as text pieces."""
        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise LLMUnavailable(f"{self.config.url}{path} answered {response.status_code}: "
                                         f"{response.text[:300]}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    try:
                        text = text_of(json.loads(payload)["choices"][0])
                    except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                        raise LLMError(f"the server streamed a chunk that is not a completion: {payload[:100]}") \
                            from None
                    if text:
                        yield str(text)
        except httpx.TimeoutException:
            raise LLMUnavailable(f"{self.config.url} stopped answering within {self.config.timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise LLMUnavailable(f"cannot reach the LLM server at {self.config.url}: {exc}") from None

    def close(self) -> None:
        self.client.close()


def _choices(data: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != expected:
        raise LLMError(f"expected {expected} choices from the server, got {data!r:.200}")
    return sorted(choices, key=lambda c: c.get("index", 0))
