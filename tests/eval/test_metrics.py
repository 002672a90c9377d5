"""Metrics on hand-built rankings with closed-form answers, and cross-checked against ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import hit_at_k, mrr_at_k, ndcg_at_k, per_user_metrics, recall_at_k, summarize

RANKED = ["a", "b", "c", "d", "e"]


def test_single_target_closed_forms() -> None:
    assert ndcg_at_k(RANKED, {"c"}, 5) == pytest.approx(1 / math.log2(4))
    assert mrr_at_k(RANKED, {"c"}, 5) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, {"c"}, 2) == 0.0 and hit_at_k(RANKED, {"c"}, 3) == 1.0
    assert ndcg_at_k(RANKED, {"a"}, 1) == 1.0
    assert ndcg_at_k(RANKED, {"z"}, 5) == 0.0 and mrr_at_k(RANKED, {"z"}, 5) == 0.0


def test_multiple_targets_closed_forms() -> None:
    relevant = {"b", "d", "z"}
    assert recall_at_k(RANKED, relevant, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, relevant, 5) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, relevant, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert mrr_at_k(RANKED, relevant, 5) == pytest.approx(0.5)


def test_matches_ranx_on_random_rankings() -> None:
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    rng = np.random.default_rng(7)
    items = [f"i{j}" for j in range(40)]
    rankings, targets, qrels, run = [], [], {}, {}
    for q in range(60):
        ranked = list(rng.permutation(items)[:20])
        relevant = set(rng.choice(items, size=int(rng.integers(1, 4)), replace=False))
        rankings.append(ranked)
        targets.append(relevant)
        qrels[f"q{q}"] = {i: 1 for i in relevant}
        run[f"q{q}"] = {i: float(20 - r) for r, i in enumerate(ranked)}
    ours = per_user_metrics(rankings, targets)
    theirs = ranx_evaluate(Qrels(qrels), Run(run), [f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit_rate")
                                                   for k in (5, 10, 20)])
    for k in (5, 10, 20):
        assert ours[f"recall@{k}"].mean() == pytest.approx(theirs[f"recall@{k}"])
        assert ours[f"ndcg@{k}"].mean() == pytest.approx(theirs[f"ndcg@{k}"])
        assert ours[f"mrr@{k}"].mean() == pytest.approx(theirs[f"mrr@{k}"])
        assert ours[f"hit@{k}"].mean() == pytest.approx(theirs[f"hit_rate@{k}"])


def test_summarize_gives_each_metric_its_mean_and_a_reproducible_interval() -> None:
    per_user = {"recall@10": np.array([0.0] * 80 + [1.0] * 20), "ndcg@10": np.full(5, 0.5)}
    summary = summarize(per_user, samples=2000, seed=1)
    assert summary["recall@10"]["mean"] == pytest.approx(0.2)
    assert 0.1 < summary["recall@10"]["ci_low"] < 0.2 < summary["recall@10"]["ci_high"] < 0.3
    assert summary["ndcg@10"] == {"mean": 0.5, "ci_low": 0.5, "ci_high": 0.5}
    assert summarize(per_user, samples=2000, seed=1) == summary  # a fixed seed: the same figures every time


def test_blend_search_scores_every_weight_without_the_llm() -> None:
    """The LLM's scores blended with the retriever's order at each weight; the best is the smallest of the
    weights that score highest."""
    from agent.rerank import RerankResult
    from eval.harness import blend_search
    from eval.protocols import Case

    shown = [["a", "b", "c"], ["d", "e", "f"]]
    # the LLM puts the first user's target second (a close call) and the second user's first
    raw = [RerankResult(["b", "a", "c"], {"a": -1.5, "b": -1.0, "c": -3.0}, 3),
           RerankResult(["f", "d", "e"], {"d": -2.0, "e": -2.5, "f": -0.5}, 3)]
    cases = [Case("u1", [], [], "a"), Case("u2", [], [], "f")]
    result = blend_search(raw, shown, cases, grid=(0.0, 1.0, 100.0))
    ndcg = result["ndcg@10"]
    assert ndcg["0.0"] == round((1 / np.log2(3) + 1.0) / 2, 5)  # the LLM's order alone
    assert ndcg["100.0"] == round((1.0 + 1 / np.log2(4)) / 2, 5)  # the retriever's order
    assert ndcg["1.0"] > ndcg["0.0"] and result["best"] == 1.0  # each user's target first


def test_fixed_candidates_are_blended_only_with_an_explicit_weight() -> None:
    """candidates20's random lists keep the LLM alone unless rerank.blend is set: the adapter's own blend was
    chosen on the retriever's top N; the retriever's lists always get the agent's blend."""
    from types import SimpleNamespace

    from agent.settings import RerankConfig
    from eval.harness import rerank_blend

    adapter_blend = SimpleNamespace(reranker=SimpleNamespace(blend=1.0),
                                    settings=SimpleNamespace(rerank=RerankConfig()))
    assert rerank_blend(adapter_blend, fixed=True) == 0.0  # type: ignore[arg-type]
    assert rerank_blend(adapter_blend, fixed=False) == 1.0  # type: ignore[arg-type]
    explicit = SimpleNamespace(reranker=SimpleNamespace(blend=2.0),
                               settings=SimpleNamespace(rerank=RerankConfig(blend=2.0)))
    assert rerank_blend(explicit, fixed=True) == 2.0  # type: ignore[arg-type]
    no_reranker = SimpleNamespace(reranker=None, settings=explicit.settings)
    assert rerank_blend(no_reranker, fixed=False) == 0.0  # type: ignore[arg-type]
