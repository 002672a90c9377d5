"""The shipped LoRA adapters: intact (manifest hashes), loaded by both backends and by a real vLLM server,
with the same label order everywhere; and a real reply from the reply adapter passes the grounding check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.assemble import Agent, adapter_prompt
from agent.events import TurnRequest
from agent.llm.backends import make_llm
from agent.llm.base import LLMConfig, shipped_adapters
from agent.rerank import RerankList, build_prompts, rerank_inputs
from conftest import agent_with_llm
from core.labels import LABELS
from core.titles import natural_title
from prompts.loader import load_prompt
from train.manifest import read_manifest, verify

STAR_WARS = ("260", "1196")


def test_shipped_adapters_are_intact_and_reproducible() -> None:
    shipped = shipped_adapters()
    assert set(shipped) == {"rerank", "reply", "adapt", "intent"}, shipped
    for name, folder in shipped.items():
        assert verify(Path(folder)) == [], f"{name}: files differ from the manifest"
        manifest = read_manifest(Path(folder))
        assert manifest["task"] == name and manifest["dataset"] == "ml-latest-small"
        assert manifest["command"].startswith(f"recagent train {name}")
        assert manifest["base_model"]["sha256"] and manifest["data_hash"] and manifest["seed"] == 0
        config = json.loads((Path(folder) / "adapter_config.json").read_text())
        assert config["r"] <= 16 and (Path(folder) / "adapter_model.safetensors").stat().st_size < 8_000_000


def _ranking_prompts(agent: Agent) -> list[str]:
    template = load_prompt("rerank_listwise", adapter_prompt(shipped_adapters()["rerank"]))
    lists = [RerankList(STAR_WARS, [c.id for c in agent.recommender.candidates(history=STAR_WARS, k=20)]),
             RerankList(("1", "2355"), [c.id for c in agent.recommender.candidates(history=["1", "2355"], k=12)],
                        "something funny")]
    return [build_prompts(item, template, 1, agent.index.noun)[0][0] for item in rerank_inputs(agent.index, lists)]


def test_adapter_changes_scores_and_backends_agree(small_agent: Agent, transformers_llm: Any,
                                                   vllm_config: LLMConfig) -> None:
    served = make_llm(vllm_config)
    for prompt in _ranking_prompts(small_agent):
        local_base = transformers_llm.label_logprobs([prompt], LABELS)[0]
        local = transformers_llm.label_logprobs([prompt], LABELS, adapter="rerank")[0]
        remote = served.label_logprobs([prompt], LABELS, adapter="rerank")[0]
        assert max(abs(local[k] - local_base[k]) for k in LABELS) > 0.05  # the adapter is applied
        assert len(remote) == len(LABELS), "every label should be in the server's top logprobs"
        top = sorted(LABELS, key=lambda label: -local[label])
        assert sorted(LABELS, key=lambda label: -remote[label])[:5] == top[:5]
        assert max(abs(local[k] - remote[k]) for k in top[:10]) < 0.1


def test_real_reply_from_the_reply_adapter_is_grounded(small_agent: Agent, transformers_llm: Any) -> None:
    agent = agent_with_llm(small_agent, transformers_llm)
    assert agent.reply_adapter == "reply" and agent.rerank_adapter == "rerank"
    response = agent.pipeline.recommend(TurnRequest(history=STAR_WARS, query="Something with space battles", k=3))
    assert response.reply_by == "llm" and not response.fallback, response
    assert any(natural_title(item.title) in response.reply for item in response.items)
