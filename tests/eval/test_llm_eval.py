"""`recagent eval --ranker llm` on a few users with the in-process default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.assemble import adapter_prompt
from agent.llm.base import shipped_adapters
from agent.rerank import RerankResult, blend_with_retriever
from eval.harness import BLEND_GRID
from eval.metrics import per_user_metrics
from prompts.loader import available


def test_llm_ranker_on_candidates20_subset(data_dir: Path, tmp_path: Path, model_folder: Path,
                                          eval_chroma_path: Path) -> None:
    env = {**os.environ, "RECAGENT_DATA_DIR": str(data_dir), "RECAGENT_RUNS_DIR": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "app.cli", "eval", "--dataset", "ml-latest-small", "--protocol",
               "candidates20", "--ranker", "llm", "--split", "validation", "--limit", "12", "--format", "json",
               "--quiet", "--llm-backend", "transformers", "--permutations", "2",
               "--chroma-path", str(eval_chroma_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = shipped_adapters()
    expected_adapter = "rerank" if "rerank" in shipped else None
    version = adapter_prompt(shipped["rerank"]) if expected_adapter else max(available()["rerank_listwise"])
    expected_prompt = f"rerank_listwise.v{version}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["protocol"] == "candidates20" and result["ranker"] == "llm" and result["subset"]
    assert result["users"] == 12 and result["users_target_in_candidates"] == 12  # the target is always shown
    assert result["llm"] == {"backend": "transformers", "model": "gemma-3-270m", "adapter": expected_adapter,
                             "method": "labels", "prompt": expected_prompt, "permutations": 2, "blend": 0.0}
    assert result["metrics"]["hit@20"]["value"] == 1.0  # a permutation of the 20 candidates
    assert 0.0 <= result["metrics"]["ndcg@10"]["value"] <= 1.0
    # on validation the blend with the fused retriever's order of the same 20 candidates is searched; weight 0
    # is the LLM alone, the figure above (candidates20 is blended only when rerank.blend is set)
    search = result["blend_search"]
    assert search["ndcg@10"]["0.0"] == result["metrics"]["ndcg@10"]["value"] and search["best"] in BLEND_GRID
    assert len(search["ndcg@10"]) == len(BLEND_GRID)
    # each user's row keeps the LLM's own scores and the retriever's order, so any blend is recomputed offline
    # (here the searched ones, to the figure)
    (run,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run / "rows.jsonl").open()]
    assert len(rows) == 12
    alone = [sorted(row["retriever_order"], key=lambda item, row=row: -row["llm_scores"][item]) for row in rows]
    assert alone == [row["ranked"] for row in rows]
    blended = [blend_with_retriever(RerankResult(alone_order, row["llm_scores"], 20), row["retriever_order"],
                                    1.0).order for alone_order, row in zip(alone, rows, strict=True)]
    for weight, orders in ((0.0, alone), (1.0, blended)):
        ndcg = per_user_metrics(orders, [{row["target"]} for row in rows])["ndcg@10"].mean()
        assert round(float(ndcg), 5) == search["ndcg@10"][str(weight)]
