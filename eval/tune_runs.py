"""Tuning runs end to end, as `recagent tune` starts them: tune on the validation split, record the run under
runs/ and save the chosen values for the dataset (agent.tuned), which eval, chat and serve then apply.

- `tune_fusion_run` (loo and other protocols): the fusion weights and the RRF constant, raced over FUSION_GRID
  (eval.tuning.tune_fusion_fast);
- `tune_linear_run` (candidates20): the linear ranker's weights (eval.tuning.tune_linear); the fusion weights
  an earlier tuning chose stay, and apply, since the linear ranker is compared with the fused one as eval runs it;
- `tune_crs_run` (crs): the weights of every generator, sources included, on the validation dialogues.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.settings import Settings
from agent.tuned import save_tuned, with_tuned
from eval.crs import dialogues_for, prepare_crs
from eval.crs_tuning import collect, generator_names, tune_crs
from eval.harness import git_commit, prepare
from eval.tuning import tune_fusion_fast, tune_linear
from index.embedder import Embedder
from index.loaders import resolve_dataset_folder

FUSION_GRID: dict[str, Sequence[float]] = {"collab": [1.0], "item2item": [0, 0.3, 0.6],
                                           "sequential": [0, 0.5, 1.0, 1.5], "text": [0, 0.1, 0.3],
                                           "popularity": [0, 0.1, 0.2]}
RRF_KS = (10, 20, 60)


def save_tune_run(runs_dir: Path, dataset: str, protocol: str, result: dict[str, Any]) -> Path:
    """The tuning's record under runs/ (what `tuned` files point back to)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    run = runs_dir / f"{stamp}_{Path(dataset).name}_{protocol}_tune.json"
    run.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return run


def tune_fusion_run(settings: Settings, dataset: str, protocol: str, max_users: int = 2000, progress: bool = True,
                    embedder: Embedder | None = None) -> dict[str, Any]:
    prepared = prepare(settings, dataset, protocol, progress=progress, embedder=embedder)
    result = tune_fusion_fast(prepared, FUSION_GRID, RRF_KS, max_users=max_users, progress=progress)
    result.update({"dataset": dataset, "protocol": prepared.split.protocol, "data_hash": prepared.data_hash,
                   "git_commit": git_commit()})
    run = save_tune_run(settings.runs_dir, dataset, prepared.split.protocol, result)
    best = result["best"]
    result["saved_to"] = str(save_tuned(settings, dataset, {"retrieval.fusion_weights": best["fusion_weights"],
                                                            "retrieval.rrf_k": best["rrf_k"]},
                                        {"metric": result["metric"], "validation": best["score"], "se": best["se"],
                                         "users": result["users"], "protocol": result["protocol"], "run": str(run)}))
    return result


def tune_linear_run(settings: Settings, dataset: str, max_users: int = 2000, progress: bool = True,
                    embedder: Embedder | None = None) -> dict[str, Any]:
    prepared = prepare(with_tuned(settings, dataset)[0], dataset, "candidates20", progress=progress, embedder=embedder)
    result = tune_linear(prepared, max_users=max_users, progress=progress)
    result.update({"dataset": dataset, "protocol": prepared.split.protocol, "data_hash": prepared.data_hash,
                   "git_commit": git_commit()})
    run = save_tune_run(settings.runs_dir, dataset, prepared.split.protocol, result)
    result["saved_to"] = str(save_tuned(settings, dataset, {"retrieval.linear_weights": result["linear_weights"]},
                                        {"metric": result["metric"], "validation": result["cross_validated"][
                                            str(result["l2"])], "users": result["users"],
                                         "protocol": result["protocol"], "run": str(run)}))
    return result


def tune_crs_run(settings: Settings, dataset: str, dialogues_file: Path | None = None, progress: bool = True
                 ) -> dict[str, Any]:
    agent, data, _ = prepare_crs(settings, dataset, progress=progress)
    dialogues = dialogues_for(resolve_dataset_folder(dataset, settings.data.data_dir), "validation", dialogues_file)
    titles = {item_id: item.title for item_id, item in data.items.items()}
    turns = collect(agent, dialogues, titles, progress=progress)
    retrieval = settings.retrieval
    result = tune_crs(turns, generator_names(agent), retrieval.fusion_weights, retrieval.rrf_k, retrieval.query_weight)
    result.update({"dataset": dataset, "protocol": "crs", "split": "validation", "data_hash": data.content_hash(),
                   "dialogues_file": str(dialogues_file) if dialogues_file else None, "git_commit": git_commit()})
    run = save_tune_run(settings.runs_dir, dataset, "crs", result)
    result["saved_to"] = str(save_tuned(settings, dataset, {
        "retrieval.fusion_weights": result["fusion_weights"], "retrieval.rrf_k": result["rrf_k"],
        "retrieval.query_weight": result["query_weight"]}, {"metric": result["metric"], "validation": result["score"],
                                                            "protocol": "crs", "run": str(run)}))
    return result
