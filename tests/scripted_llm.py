"""A base for the scripted LLMs that test control flow: a subclass writes `complete`; the rest ranks in
the retriever's order (the first label or continuation best), streams the completion in one piece and has no chat."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from agent.llm.base import Message


class ScriptedLLM:
    name = "scripted"

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        raise NotImplementedError

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        return [{label: -float(i) for i, label in enumerate(labels)} for _ in prompts]

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        return [(-float(i), 1) for i, _ in enumerate(continuations)]

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        yield from self.complete([prompt])

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        yield from ()

    def close(self) -> None:
        pass
