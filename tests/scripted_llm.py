"""The one scripted LLM of the tests, for control flow only (the real model is tests/conftest.py's
`transformers_llm`): it replays queued completions and scores labels and continuations in a fixed order.

A subclass that writes its own `complete` keeps the rest: ranking, streaming four characters at a time, no chat.
A reply may hold `{reason:A}`: the sentence "[A]: <the reason the prompt shows for A>", a true sentence about
the item, for tests whose LLM must write something grounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from agent.llm.base import Message

Scores = Callable[[Sequence[str]], dict[str, float]]
_REASON = re.compile(r"\{reason:([A-Za-z0-9]{1,3})\}")


def reason_sentence(prompt: str, label: str) -> str:
    """'[A]: <reason>' from the reply prompt's line '[A] Title (1995): <reason>' (the title may hold colons)."""
    for line in prompt.splitlines():
        if line.startswith(f"[{label}] "):
            match = re.match(r"\[[^\]]+\] .*?\(\d{4}\)\)?: (.*)$", line) or re.match(r"\[[^\]]+\] [^:]*: (.*)$", line)
            if match:
                return f"[{label}]: {match.group(1)}"
    return f"[{label}]"


def reason_reply(prompt: str) -> str:
    """A true sentence for every label of the reply prompt."""
    labels = [line[1:line.index("]")] for line in prompt.splitlines() if line.startswith("[") and "]" in line]
    return " ".join(reason_sentence(prompt, label) for label in labels)


class ScriptedLLM:
    """`replies` are returned in turn (the last one again once the others are used); an exception among them
    is raised in its turn. `scores` is a function of the labels or an exception to raise from every scoring
    call; without it the labels and continuations are scored in the retriever's order (the first best), or
    the reverse with `reverse=True`. The prompts and prefixes it was given are kept for the test to read."""

    name = "scripted"

    def __init__(self, replies: Sequence[str | Exception] = (), scores: Scores | Exception | None = None,
                 reverse: bool = False) -> None:
        self.replies = list(replies)
        self.scores = scores
        self.reverse = reverse
        self.prompts: list[str] = []
        self.prefixes: list[str] = []

    def _rank(self, count: int) -> list[float]:
        """A score per position: the first best, or the last with `reverse`."""
        return [float(i) - count if self.reverse else -float(i) for i in range(count)]

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        self.prompts += prompts
        assert self.replies, "the scripted LLM was asked to write but has no replies"
        out: list[str] = []
        for _ in prompts:
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if isinstance(reply, Exception):
                raise reply
            out.append(_REASON.sub(lambda m: reason_sentence(prompts[len(out)], m.group(1)), reply))
        return out

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        if isinstance(self.scores, Exception):
            raise self.scores
        if self.scores is not None:
            return [self.scores(labels) for _ in prompts]
        return [dict(zip(labels, self._rank(len(labels)), strict=True)) for _ in prompts]

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        self.prefixes.append(prefix)
        if isinstance(self.scores, Exception):
            raise self.scores
        return [(score, 1) for score in self._rank(len(continuations))]

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        text = self.complete([prompt], max_tokens, stop, adapter)[0]
        for start in range(0, len(text), 4):  # four characters at a time, like tokens
            yield text[start:start + 4]

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        yield from ()

    def close(self) -> None:
        pass
