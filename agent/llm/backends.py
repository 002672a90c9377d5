"""Backend registry: a plain dict from name to constructor, imported lazily."""

from __future__ import annotations

from collections.abc import Callable

from agent.llm.base import LLM, LLMConfig, LLMError


def _transformers(config: LLMConfig) -> LLM:
    from agent.llm.transformers_backend import TransformersLLM

    return TransformersLLM(config)


def _vllm(config: LLMConfig) -> LLM:
    from agent.llm.vllm_backend import OpenAICompatibleLLM

    return OpenAICompatibleLLM(config)


BACKENDS: dict[str, Callable[[LLMConfig], LLM]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _vllm,  # any OpenAI-compatible server
}


def make_llm(config: LLMConfig) -> LLM:
    if config.backend not in BACKENDS:
        raise LLMError(f"unknown LLM backend {config.backend!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[config.backend](config)
