"""The fast tuner: ranks computed from kept lists equal real fusion's, and racing picks what the exhaustive
grid search picks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.retrieval import reciprocal_rank_fusion
from agent.settings import Settings
from conftest import make_settings
from eval.tuning import Setting, metric_from_ranks, target_ranks, tune_fusion_fast, weight_grid


def test_target_ranks_match_reciprocal_rank_fusion() -> None:
    rng = np.random.default_rng(5)
    items = [f"i{n:02d}" for n in range(40)]
    settings = [Setting({"a": a, "b": b, "c": c}, k) for a in (0, 0.5, 1) for b in (0, 1) for c in (0.3, 2)
                for k in (1.0, 20.0)]
    for _ in range(30):
        lists = {name: [(str(i), 0.0) for i in rng.permutation(items)[: int(rng.integers(5, 25))]]
                 for name in ("a", "b", "c")}
        target = str(rng.choice(items))
        ranks = target_ranks(lists, target, settings)
        for setting, rank in zip(settings, ranks, strict=True):
            fused = [i for i, _ in reciprocal_rank_fusion(lists, setting.weights, setting.rrf_k, 100)]
            assert rank == (fused.index(target) if target in fused else 10**9), (setting, lists, target)


def test_metric_from_ranks() -> None:
    ranks = np.array([0, 1, 9, 10, 10**9])
    assert metric_from_ranks(ranks, "recall@10").tolist() == [1, 1, 1, 0, 0]
    assert metric_from_ranks(ranks, "ndcg@10")[1] == pytest.approx(1 / np.log2(3))
    assert metric_from_ranks(ranks, "mrr@10")[2] == pytest.approx(0.1)
    assert len(weight_grid({"a": [0, 1], "b": [0, 1]}, [10, 20])) == 6  # all-zero weights are skipped


@pytest.fixture(scope="module")
def small_settings(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(small_data_dir, tmp_path_factory.mktemp("tune-chroma"))


def test_racing_agrees_with_the_exhaustive_search(small_settings: Settings, embedder: object) -> None:
    from eval.harness import prepare, tune_fusion

    prepared = prepare(small_settings, "movies-small", "loo", progress=False, embedder=embedder)  # type: ignore[arg-type]
    grid = {"collab": [1.0], "sequential": [0, 1.0], "popularity": [0, 0.2], "text": [0, 0.3]}
    exhaustive = tune_fusion(prepared, grid, [20], progress=False)
    fast = tune_fusion_fast(prepared, grid, [20], max_users=10_000, batch=10_000, progress=False)
    assert fast["users"] == len(prepared.split.validation) and fast["stopped_because"] == "every sampled user was used"
    assert fast["best"]["score"] == pytest.approx(exhaustive["best"]["score"], abs=1e-5)
    raced = tune_fusion_fast(prepared, grid, [20], max_users=10_000, batch=100, drop_z=1.0, tolerance=1.0,
                             progress=False)
    assert raced["users"] < fast["users"]  # stopped early
