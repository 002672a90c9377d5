"""The one small LLM interface every backend implements, and its errors.

Three operations: complete prompts, score label tokens at the next position (one forward pass, no
generation loop: what listwise reranking needs), and stream a chat reply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from index.errors import RecagentError


class LLMError(RecagentError):
    """The model answered with something unusable, or could not be asked."""


class LLMUnavailable(LLMError):
    """The server is down, too slow (timeout), or refused the request."""


class Message(TypedDict):
    role: str
    content: str


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str = Field("transformers", description="'transformers' (in-process) or 'vllm' (HTTP server)")
    model: str = Field("default", description="'default' (Gemma 3 270M from its PyPI package), a local "
                                              "model folder, or a served model name")
    url: str = Field("http://127.0.0.1:8311", description="base URL of a vLLM / OpenAI-compatible server")
    served_model: str | None = Field(None, description="model name on the server (default: derived)")
    api_key: str | None = None
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout; past it the agent falls back")
    max_logprobs: int = Field(300, ge=1, description="top logprobs asked of the server per position")
    dtype: str = Field("float32", description="compute dtype for the in-process backend and `llm serve`")


class LLM(Protocol):
    name: str

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = ()) -> list[str]:
        """Greedy completions, one per prompt."""
        ...

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        """Log-probability of each label (one token each) as the next token, one dict per prompt.

        A label the backend could not score (outside a server's top-k) is absent from the dict.
        """
        ...

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ()) -> Iterator[str]:
        """A greedy completion of one prompt, as text pieces while they are generated."""
        ...

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        """The reply to a conversation, as text pieces while they are generated."""
        ...
