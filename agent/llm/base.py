"""The one small LLM interface every backend implements, and its errors.

Three operations: complete prompts, score label tokens at the next position (one forward pass, no
generation loop: what listwise reranking needs), and stream a chat reply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from core.errors import RecagentError


class LLMError(RecagentError):
    """The model answered with something unusable, or could not be asked."""


class LLMUnavailable(LLMError):
    """The server is down, too slow (timeout), or refused the request."""


class Message(TypedDict):
    role: str
    content: str


def shipped_adapters() -> dict[str, str]:
    """The adapters trained on ml-latest-small that ship in models/, by name (those present): the listwise
    ranker, the reply writer, the domain-adapted model (the likelihood ranker's) and the intent reader."""
    folder = Path(__file__).resolve().parents[2] / "models" / "ml-latest-small"
    return {name: str(folder / name) for name in ("rerank", "reply", "adapt", "intent")
            if (folder / name / "manifest.json").exists()}


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "vllm", "openai", "none"] = Field(
        "transformers", description="'transformers' (in-process), 'vllm' (HTTP server) or 'none' (no LLM)")
    model: str = Field("default", description="'default' (Gemma 3 270M from its PyPI package), a local "
                                              "model folder, or a served model name")
    url: str = Field("http://127.0.0.1:8311", description="base URL of a vLLM / OpenAI-compatible server")
    served_model: str | None = Field(None, description="model name on the server (default: derived)")
    api_key: str | None = None
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout; past it the agent falls back")
    max_logprobs: int = Field(300, ge=1, description="top logprobs asked of the server per position")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature of generated text (the "
                                                                "replies); 0: greedy. Ranking reads log-probs, "
                                                                "which it does not change")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling when temperature > 0")
    seed: int = Field(0, description="sampling seed: the same prompt gives the same text")
    dtype: str = Field("float32", description="compute dtype for the in-process backend and `llm serve`")
    adapters: dict[str, str] = Field(default_factory=shipped_adapters,
                                     description="LoRA adapters by name (folders); a server serves them under "
                                                 "these names. Default: the ones shipped in models/")
    model_cache: Path | None = Field(None, description="where the default model is converted and cached "
                                                       "(default ~/.cache/recagent/models)")

    @property
    def served(self) -> bool:
        """The model answers over HTTP (a vLLM or OpenAI-compatible server), not in this process."""
        return self.backend in ("vllm", "openai")


class LLM(Protocol):
    """Every call takes `adapter`: the name of a LoRA adapter to apply, or None for the base model."""

    name: str

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        """Completions, one per prompt: greedy, or sampled with the configured temperature and seed."""
        ...

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        """Log-probability of each label (one token each) as the next token, one dict per prompt.

        A label the backend could not score (outside a server's top-k) is absent from the dict.
        """
        ...

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        """For each continuation of `prefix`: the summed log-probability of its tokens and how many there are.

        Each continuation must start a token of its own (e.g. with a space after the prefix's last word), so
        that `prefix + continuation` tokenizes as the prefix's tokens followed by the continuation's.
        """
        ...

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        """A completion of one prompt (as `complete`), as text pieces while they are generated. Closing the
        iterator early stops the generation."""
        ...

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        """The reply to a conversation, as text pieces while they are generated."""
        ...

    def close(self) -> None:
        """Stop work in progress and release the model or connection (at shutdown)."""
        ...
