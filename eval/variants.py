"""Prompt and model variants: what `recagent eval prompts --variants ... --models ...` compares.

A variant is a prompt file version (`rerank_listwise@2`, from prompts/ or settings.prompt_dir), a model
(`base`, an adapter named in llm.adapters, or `template`: replies without the LLM), or both
(`rerank_listwise@2:rerank`); `--models` crosses
every prompt with every model. The first variant is the baseline. Each variant gets its agent from the
composition root with its own settings, over the same index and one cached LLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.assemble import Agent, build_agent
from agent.settings import RERANK_PROMPTS, Settings
from core.errors import InvalidRequest
from eval.llm_cache import CachedLLM

Kind = Literal["rerank", "reply"]
_PROMPT = re.compile(r"^(?P<name>[a-z0-9_]+)@(?P<version>\d+)$")


@dataclass(frozen=True)
class Variant:
    prompt: str | None  # prompt name; None: the configured one
    version: int | None
    model: str | None  # "base", an adapter name, or None: the configured adapter

    @property
    def label(self) -> str:
        parts = [f"{self.prompt}@{self.version}" if self.prompt else "", self.model or ""]
        return ":".join(p for p in parts if p) or "configured"


def parse_variants(spec: str, models: str | None, adapters: dict[str, str]) -> list[Variant]:
    """'rerank_listwise@2,rerank_listwise@3' x 'base,rerank' -> four variants, in that order."""
    model_names: list[str | None] = [m.strip() for m in models.split(",") if m.strip()] if models else [None]
    variants: list[Variant] = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        prompt_part, _, model_part = token.partition(":")
        match = _PROMPT.match(prompt_part)
        if match is None and model_part:
            raise InvalidRequest(f"variant {token!r}: write a prompt as NAME@VERSION")
        if match is None:  # a bare model name
            prompt, version = None, None
            chosen: list[str | None] = [prompt_part]
        else:
            prompt, version = match["name"], int(match["version"])
            chosen = [model_part] if model_part else list(model_names)
        for m in chosen:
            if m is not None and m not in ("base", "template") and m not in adapters:
                raise InvalidRequest(f"variant {token!r}: no adapter named {m!r} in llm.adapters "
                                     f"(have: {', '.join(adapters) or 'none'}; 'base' is the model without one)")
            variants.append(Variant(prompt, version, m))
    if not variants:
        raise InvalidRequest("--variants names no variant")
    kinds = {kind_of(v.prompt) for v in variants if v.prompt}
    if len(kinds) > 1:
        raise InvalidRequest("variants must all be rerank prompts or all reply prompts")
    return variants


def kind_of(prompt: str | None) -> Kind:
    return "reply" if prompt is not None and prompt.startswith("reply") else "rerank"


def variant_settings(settings: Settings, variant: Variant, kind: Kind) -> Settings:
    """The settings that make the composition root build this variant (one list per backend call, so
    latency is measured per request)."""
    section = settings.rerank if kind == "rerank" else settings.reply
    update: dict[str, object] = {}
    if variant.prompt is not None:
        update.update(prompt=variant.prompt, prompt_version=variant.version)
        if kind == "rerank":  # the prompt says how the list is scored (a prompt of one's own: labels)
            update["method"] = {p: m for m, p in RERANK_PROMPTS.items()}.get(variant.prompt, "labels")
    if variant.model is not None:  # "base" is no adapter's name: the model without one
        update["adapter"] = variant.model
    changed = section.model_copy(update=update)
    if kind == "rerank":
        return settings.model_copy(update={"rerank": changed.model_copy(update={"batch_size": 1})})
    return settings.model_copy(update={"reply": changed})


def variant_agent(base: Agent, settings: Settings, variant: Variant, kind: Kind, llm: CachedLLM) -> Agent:
    if variant.model == "template":  # the pipeline without an LLM: replies from the evidence alone
        chosen = variant_settings(settings, Variant(variant.prompt, variant.version, None), kind)
        return build_agent(chosen, llm=None, index=base.index, encoder=base.encoder)
    return build_agent(variant_settings(settings, variant, kind), llm=llm, index=base.index, encoder=base.encoder)


def prompt_texts(agents: dict[str, Agent], kind: Kind) -> dict[str, str]:
    """The exact template text of every prompt the variants used, by prompt id."""
    texts = {}
    for agent in agents.values():
        if kind == "rerank" and agent.reranker is not None:
            texts[agent.reranker.template.id] = agent.reranker.template.template
        replier = agent.pipeline.replier
        if kind == "reply" and replier is not None:
            texts[replier.template.id] = replier.template.template
    return texts
