"""The evaluation's answer cache: concurrent prefetching for a served model computes each missing prompt
once, at the requested concurrency, and the reads that follow report them as computed, then as cached.
(Control flow only: a scripted LLM that records how many prompts it answers at once.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from scripted_llm import ScriptedLLM

from eval.llm_cache import CachedLLM


class CountingLLM(ScriptedLLM):
    def __init__(self) -> None:
        super().__init__()
        self.answered: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
            self.answered.extend(prompts)
        return [f"{adapter}:{p.upper()}" for p in prompts]


def test_prefetch_computes_missing_prompts_concurrently_and_once(tmp_path: Path) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, tmp_path / "cache.sqlite")
    assert llm.complete(["a"], 8, adapter="reply") == ["reply:A"]  # already cached before the prefetch
    prompts = ["a", "b", "c", "d", "e", "f", "b"]
    llm.prefetch_completions(prompts, 8, [], "reply", workers=4)
    assert sorted(inner.answered) == ["a", "b", "c", "d", "e", "f"]  # "a" once before, the rest once each
    assert inner.most_at_once > 1
    before = len(llm.calls)
    assert llm.complete(prompts[:6], 8, adapter="reply") == [f"reply:{p.upper()}" for p in prompts[:6]]
    assert [c.cached for c in llm.calls[before:]] == [True, False, False, False, False, False]
    assert llm.complete(["b"], 8, adapter="reply") == ["reply:B"] and llm.calls[-1].cached
    assert llm.complete(["b"], 8, adapter=None) == ["None:B"]  # another adapter is another answer
    assert len(inner.answered) == 7
    llm.close()
