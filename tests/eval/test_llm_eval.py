"""`recagent eval --ranker llm` on a few users with the in-process default model: the figures it reports are
recomputed here by hand from the model's own label scores, so a wrong label-to-candidate mapping, a wrong
average over the permutations or a wrong metric shows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.assemble import adapter_prompt
from agent.llm.base import shipped_adapters
from agent.rerank import RerankList, RerankResult, blend_with_retriever, render_prompt, rerank_inputs
from conftest import make_settings
from core.labels import LABELS
from eval.harness import BLEND_GRID, llm_agent, prepare
from prompts.loader import available

USERS, CHECKED = 12, 3  # users evaluated; users whose scores are recomputed from the model here


def _rank(row: dict[str, Any]) -> int:
    return int(row["ranked"].index(row["target"]))


def _by_hand(agent: Any, llm: Any, history: list[str], shown: list[str], adapter: str | None) -> dict[str, float]:
    """Each candidate's mean label log-probability over the identity and the reversed order of `shown`, the
    two permutations the command was asked for: the label in slot s names the candidate order[s]."""
    reranker = agent.reranker
    (item,) = rerank_inputs(agent.index, [RerankList(history, shown)], reranker.history_window)
    orders = [list(range(len(shown))), list(range(len(shown)))[::-1]]
    prompts = [render_prompt(reranker.template, item, order, agent.index.noun, reranker.history_window)
               for order in orders]
    scores = llm.label_logprobs(prompts, LABELS, adapter=adapter)
    totals = dict.fromkeys(shown, 0.0)
    for order, scored in zip(orders, scores, strict=True):
        for slot, position in enumerate(order):
            totals[shown[position]] += scored[LABELS[slot]]
    return {item_id: total / len(orders) for item_id, total in totals.items()}


def test_llm_ranker_on_candidates20_subset(data_dir: Path, tmp_path: Path, eval_chroma_path: Path,
                                          transformers_llm: Any) -> None:
    env = {**os.environ, "RECAGENT_DATA_DIR": str(data_dir), "RECAGENT_RUNS_DIR": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "app.cli", "eval", "--dataset", "ml-latest-small", "--protocol",
               "candidates20", "--ranker", "llm", "--split", "validation", "--limit", str(USERS), "--format",
               "json", "--quiet", "--llm-backend", "transformers", "--permutations", "2",
               "--chroma-path", str(eval_chroma_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = shipped_adapters()
    expected_adapter = "rerank" if "rerank" in shipped else None
    version = adapter_prompt(shipped["rerank"]) if expected_adapter else max(available()["rerank_listwise"])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["protocol"] == "candidates20" and result["ranker"] == "llm" and result["subset"]
    assert result["users"] == USERS and result["users_target_in_candidates"] == USERS
    assert result["llm"] == {"backend": "transformers", "model": "gemma-3-270m", "adapter": expected_adapter,
                             "method": "labels", "prompt": f"rerank_listwise.v{version}", "permutations": 2,
                             "blend": 0.0}

    (run,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run / "rows.jsonl").open()]
    prepared = prepare(make_settings(data_dir, eval_chroma_path, dataset="ml-latest-small"), "ml-latest-small",
                       "candidates20", progress=False)
    cases = prepared.split.validation[:USERS]
    assert [(r["unit"], r["target"]) for r in rows] == [(c.user, c.target) for c in cases]
    for row, case in zip(rows, cases, strict=True):  # the LLM alone orders the 20 shown candidates by its scores
        assert sorted(row["ranked"]) == sorted(case.candidates or []) == sorted(row["llm_scores"])
        shown = list(case.candidates or [])
        assert row["ranked"] == sorted(shown, key=lambda i, row=row: (-row["llm_scores"][i], shown.index(i)))

    # the scores are the model's: recomputed here from its label log-probabilities on the two orders shown
    agent = llm_agent(prepared, transformers_llm)
    assert agent.prompts["rerank"] == f"rerank_listwise.v{version}" and agent.rerank_adapter == expected_adapter
    for row, case in zip(rows[:CHECKED], cases[:CHECKED], strict=True):
        mine = _by_hand(agent, transformers_llm, list(case.history), list(case.candidates or []), expected_adapter)
        assert [row["llm_scores"][i] for i in mine] == pytest.approx(list(mine.values()), abs=2e-3)

    # each figure equals its closed form over the target's rank in each user's list
    ranks = [_rank(row) for row in rows]
    metrics = result["metrics"]
    expected = {"ndcg@10": np.mean([1 / math.log2(r + 2) if r < 10 else 0.0 for r in ranks]),
                "recall@5": np.mean([r < 5 for r in ranks]), "mrr@10": np.mean([1 / (r + 1) if r < 10 else 0.0
                                                                                for r in ranks])}
    for name, value in expected.items():
        assert metrics[name]["value"] == pytest.approx(value, abs=1e-5), name
        assert metrics[name]["ci95"][0] <= metrics[name]["value"] <= metrics[name]["ci95"][1]

    # on validation the blend with the retriever's order of the same 20 candidates is searched (candidates20 is
    # blended only when rerank.blend is set): weight 0 is the LLM alone, the figure above; the others recomputed
    search = result["blend_search"]
    assert set(search["ndcg@10"]) == {str(w) for w in BLEND_GRID} and search["best"] in BLEND_GRID
    assert search["ndcg@10"]["0.0"] == round(float(expected["ndcg@10"]), 5)
    for weight in (1.0, 8.0):
        orders = [blend_with_retriever(RerankResult(row["ranked"], row["llm_scores"], 20), row["retriever_order"],
                                       weight).order for row in rows]
        ndcg = np.mean([1 / math.log2(o.index(r["target"]) + 2) if o.index(r["target"]) < 10 else 0.0
                        for o, r in zip(orders, rows, strict=True)])
        assert search["ndcg@10"][str(weight)] == round(float(ndcg), 5), weight
