"""An LLM wrapper that caches every answer on disk, keyed by (operation, model, adapter, prompt, options).

Prompt evaluations go through it, so a re-run computes only prompts whose text, model or adapter
changed, and an interrupted run resumes where it stopped (each answer is committed as it arrives).
Each answer keeps the latency and the prompt's token count measured when it was computed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.llm.base import LLM, Message


@dataclass(frozen=True)
class Call:
    """One prompt's answer as the evaluation saw it."""

    latency_s: float
    tokens: int | None
    cached: bool


class CachedLLM:
    """Implements the LLM interface over another LLM; `calls` records every prompt answered, in order."""

    def __init__(self, inner: LLM, path: Path) -> None:
        self.inner = inner
        self.name = inner.name
        config = getattr(inner, "config", None)  # sampled text is another answer than greedy text
        self._sampling = [getattr(config, k, None) for k in ("temperature", "top_p", "seed")] \
            if getattr(config, "temperature", 0) else None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT, latency REAL, "
                         "tokens INTEGER)")
        self._db.commit()
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self._fresh: set[str] = set()  # computed by prefetch, not yet read: reported as not cached

    def _key(self, operation: str, prompt: str, adapter: str | None, options: Any) -> str:
        extra = [] if self._sampling is None or operation != "complete" else [self._sampling]
        payload = json.dumps([operation, self.name, adapter, prompt, options, *extra], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def _tokens(self, prompt: str) -> int | None:
        tokenizer = getattr(self.inner, "tokenizer", None)
        return len(tokenizer.encode(prompt)) if tokenizer is not None else None

    def _answer(self, operation: str, prompt: str, adapter: str | None, options: Any, compute: Any) -> Any:
        key = self._key(operation, prompt, adapter, options)
        with self._lock:
            row = self._db.execute("SELECT value, latency, tokens FROM answers WHERE key = ?", (key,)).fetchone()
            fresh = key in self._fresh
            self._fresh.discard(key)
        if row is not None:
            self.calls.append(Call(float(row[1]), row[2], not fresh))
            return json.loads(row[0])
        value, latency, tokens = self._compute(key, prompt, compute)
        self.calls.append(Call(latency, tokens, False))
        return value

    def _compute(self, key: str, prompt: str, compute: Any) -> tuple[Any, float, int | None]:
        started = time.perf_counter()
        value = compute()
        latency = time.perf_counter() - started
        tokens = self._tokens(prompt)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                             (key, json.dumps(value), latency, tokens))
            self._db.commit()
        return value, latency, tokens

    def prefetch_completions(self, prompts: Sequence[str], max_tokens: int, stop: Sequence[str],
                             adapter: str | None, workers: int) -> None:
        """Compute the uncached completions of `prompts`, `workers` at a time (a served model batches them);
        the `complete` calls that follow read them and record them as computed, with the latency each had
        at that concurrency."""
        options = [max_tokens, list(stop)]
        with self._lock:
            missing = list(dict.fromkeys(
                p for p in prompts if self._db.execute("SELECT 1 FROM answers WHERE key = ?",
                                                       (self._key("complete", p, adapter, options),)).fetchone()
                is None))

        def one(prompt: str) -> None:
            key = self._key("complete", prompt, adapter, options)
            self._compute(key, prompt, lambda: self.inner.complete([prompt], max_tokens, stop, adapter=adapter)[0])
            with self._lock:
                self._fresh.add(key)

        if missing:
            with ThreadPoolExecutor(max(1, workers)) as pool:
                list(pool.map(one, missing))

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        return [self._answer("label_logprobs", p, adapter, list(labels),
                             lambda p=p: self.inner.label_logprobs([p], labels, adapter=adapter)[0]) for p in prompts]

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        value = self._answer("continuation_logprobs", prefix, adapter, list(continuations),
                             lambda: self.inner.continuation_logprobs(prefix, continuations, adapter=adapter))
        return [(float(total), int(count)) for total, count in value]

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        return [self._answer("complete", p, adapter, [max_tokens, list(stop)],
                             lambda p=p: self.inner.complete([p], max_tokens, stop, adapter=adapter)[0])
                for p in prompts]

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        yield self.complete([prompt], max_tokens, stop, adapter)[0]

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        return self.inner.stream_chat(messages, max_tokens)

    def close(self) -> None:
        """Closes the cache only: the wrapped model belongs to whoever made it."""
        with self._lock:
            self._db.close()
