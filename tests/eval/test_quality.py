"""The issue's quality bar through the real command: fused retriever on ml-latest-small, loo, test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_fused_meets_the_bar_and_run_is_saved(data_dir: Path, tmp_path: Path, eval_chroma_path: Path) -> None:
    env = {**os.environ, "RECAGENT_DATA_DIR": str(data_dir), "RECAGENT_RUNS_DIR": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "app.cli", "eval", "--dataset", "ml-latest-small", "--protocol", "loo",
               "--ranker", "fused", "--split", "test", "--format", "json", "--quiet",
               "--chroma-path", str(eval_chroma_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["dataset"], result["protocol"], result["ranker"], result["split"]) == (
        "ml-latest-small", "loo", "fused", "test")
    assert result["users"] == 610
    metrics = result["metrics"]
    assert set(metrics) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in (5, 10, 20)}
    for value in metrics.values():
        assert value["ci95"][0] <= value["value"] <= value["ci95"][1]
    assert metrics["recall@10"]["value"] >= 0.13, metrics["recall@10"]
    assert metrics["ndcg@10"]["value"] >= 0.065, metrics["ndcg@10"]
    saved = json.loads(Path(result["saved_to"]).read_text())
    assert saved["metrics"] == metrics and saved["data_hash"] and saved["git_commit"]
    assert saved["settings"]["retrieval"]["fusion_weights"]
