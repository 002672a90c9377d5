"""`recagent eval prompts` with the real default model: an identical prompt variant passes --fail-if-worse,
a deliberately broken one (tests/eval/prompts, not in prompts/) fails it; reply variants are scored on a
request set built from the data. Prompts answered before come from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, copy_index
from prompts.loader import load_prompt

TEST_PROMPTS = Path(__file__).resolve().parent / "prompts"


@pytest.fixture(scope="module")
def run_prompts(small_data_dir: Path, small_eval_index: Path, tmp_path_factory: pytest.TempPathFactory,
                model_folder: Path) -> Any:
    runs = tmp_path_factory.mktemp("runs")
    chroma = copy_index(small_eval_index, tmp_path_factory.mktemp("prompt-eval") / "chroma")

    def run(variants: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.cli", "eval", "prompts", "--dataset", "movies-small", "--protocol",
                   "loo", "--split", "validation", "--variants", variants, "--prompt-dir", str(TEST_PROMPTS),
                   "--llm-backend", "transformers", "--no-adapters", "--format", "json", "--quiet",
                   "--chroma-path", str(chroma), *extra]
        environment = {**os.environ, "RECAGENT_DATA_DIR": str(small_data_dir), "RECAGENT_RUNS_DIR": str(runs),
                       "RECAGENT_TUNED_DIR": str(runs / "tuned"), **(env or {})}
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1500, cwd=REPO)

    return run


@pytest.mark.slow  # two 40-user ranking evaluations of two variants each with the real model: about 16 minutes here
def test_identical_variant_passes_and_broken_variant_fails(run_prompts: Any) -> None:
    same = run_prompts("rerank_listwise@3,rerank_listwise@901", "--limit", "40", "--fail-if-worse", "ndcg@10")
    assert same.returncode == 0, same.stderr[-3000:]
    result = json.loads(same.stdout.strip().splitlines()[-1])
    assert result["kind"] == "rerank" and result["users"] == 40 and result["baseline"] == "rerank_listwise@3"
    baseline, identical = result["variants"]["rerank_listwise@3"], result["variants"]["rerank_listwise@901"]
    assert identical["metrics"] == baseline["metrics"]
    assert baseline["parse_rate"] == 1.0 and baseline["tokens_per_request"] > 100
    for error in ("outside_candidates", "outside_catalog", "history_copies", "duplicates"):
        assert baseline["metrics"][error]["value"] == 0.0  # structurally zero for a label ranker, and measured
    assert baseline["latency_s"]["mean"] > 0
    ndcg = next(d for d in result["differences"] if d["metric"] == "ndcg@10")
    assert (ndcg["mean"], ndcg["p_value"]) == (0.0, 1.0)
    assert result["llm_calls"]["cached"] >= 40  # the identical prompt text was answered once
    folder = Path(result["saved_to"]).parent
    prompts = json.loads((folder / "prompts.json").read_text())
    assert prompts["rerank_listwise.v3"] == load_prompt("rerank_listwise", 3).template
    assert prompts["rerank_listwise.v901"] == prompts["rerank_listwise.v3"]
    assert result["position_bias"]["rerank_listwise@3"]["lists"] == 40

    broken = run_prompts("rerank_listwise@3,rerank_listwise@902", "--limit", "40", "--fail-if-worse", "ndcg@10")
    assert broken.returncode == 1, broken.stderr[-3000:]
    assert "significantly worse" in broken.stderr and "rerank_listwise@902" in broken.stderr
    result = json.loads(broken.stdout.strip().splitlines()[-1])
    assert result["llm_calls"]["cached"] >= 40  # the baseline came from the cache
    ndcg = next(d for d in result["differences"] if d["metric"] == "ndcg@10")
    assert ndcg["mean"] < 0 and ndcg["p_value"] < 0.05 and ndcg["ci_high"] < 0
    bias = result["position_bias"]["rerank_listwise@902"]
    assert sum(bias["first_choice_share"][-4:]) > 0.5  # it picks the last labels first: broken as designed


def test_reply_variants_on_a_fixed_request_set(run_prompts: Any) -> None:
    done = run_prompts("reply@2,reply@901", "--requests", "1", env={"RECAGENT_REPLY__MAX_TOKENS": "24"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kind"] == "reply" and list(result["variants"]) == ["reply@2", "reply@901"]
    for summary in result["variants"].values():
        assert summary["units"] == 3  # a known user, free text, constraints
        assert {"llm_reply", "llm_items", "false_claims", "raw_false_claims", "generic", "acknowledged",
                "distinct_2", "words_per_item"} <= set(summary["metrics"])
        assert summary["metrics"]["false_claims"]["value"] == 0.0  # grounded, and the fill-ins are true
        assert summary["metrics"]["acknowledged"]["value"] == 1.0  # the constrained request
        assert 0.0 <= summary["distinct_2_across"] <= 1.0
    assert {d["metric"] for d in result["differences"]} >= {"llm_reply", "false_claims", "acknowledged"}
    rows = [json.loads(line) for line in (Path(result["saved_to"]).parent / "rows.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"user", "free_text", "constraints"}
