"""Every variant on the same units: rankings for rerank prompts, replies for reply prompts.

Rerank variants rerank the same lists (the protocol's fixed candidates, or the fused top-N) for the same
users. Per variant: ranking metrics, the share of outputs whose labels were all scored, error rates
(items outside the candidates or the catalog, copies of the history, duplicates: structurally zero for a
label-logprob ranker, measured all the same), position bias, latency and tokens per request. Reply
variants write about the same retrieved items for a fixed request set (eval.reply_eval).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.assemble import Agent
from agent.rerank import RerankList
from eval.llm_cache import CachedLLM
from eval.metrics import per_user_metrics
from eval.protocols import Case
from eval.units import list_positions

Row = dict[str, Any]
LOWER_IS_BETTER = ("latency_s", "tokens", "outside_candidates", "outside_catalog", "history_copies", "duplicates")


def rerank_rows(agent: Agent, llm: CachedLLM, label: str, cases: Sequence[Case], shown: Sequence[Sequence[str]],
                progress: bool = True) -> list[Row]:
    """One row per user: the variant's order of the shown list, its metrics, errors, latency, tokens."""
    assert agent.reranker is not None
    expected = agent.reranker.permutations
    rows = []
    catalog = agent.index.entries
    running: list[float] = []
    with tqdm(total=len(cases), desc=f"reranking ({label})", unit="user", disable=not progress) as bar:
        for case, candidates in zip(cases, shown, strict=True):
            before = len(llm.calls)
            result = agent.reranker.rerank([RerankList(case.history, list(candidates))])[0]
            calls = llm.calls[before:]
            order = result.order
            metrics = {k: float(v[0]) for k, v in per_user_metrics([order], [{case.target}]).items()}
            history = set(case.history)
            errors = {"outside_candidates": float(sum(i not in set(candidates) for i in order)),
                      "outside_catalog": float(sum(i not in catalog for i in order)),
                      "history_copies": float(sum(i in history for i in order)),
                      "duplicates": float(len(order) - len(set(order)))}
            tokens = [c.tokens for c in calls if c.tokens is not None]
            rows.append({"entry": label, "unit": case.user, "target": case.target, "ranked": order,
                         "parsed": float(result.scored == len(candidates) * expected), "scored": result.scored,
                         "latency_s": sum(c.latency_s for c in calls), "cached": all(c.cached for c in calls),
                         "tokens": float(np.mean(tokens)) if tokens else None,
                         "metrics": {**metrics, **errors}, **list_positions(candidates, order, case.target)})
            running.append(metrics.get("ndcg@10", 0.0))
            bar.update(1)
            bar.set_postfix(ndcg10=f"{np.mean(running):.3f}")
    return rows


def summarize_variant(rows: Sequence[Row]) -> dict[str, Any]:
    """Means of a variant's per-unit rows (parse share, latency, tokens included)."""
    from eval.stats import bootstrap_interval

    out: dict[str, Any] = {"units": len(rows)}
    names = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    out["metrics"] = {}
    for name in names:
        values = np.array([r["metrics"][name] for r in rows if name in r["metrics"]])
        low, high = bootstrap_interval(values, 1000)
        out["metrics"][name] = {"value": round(float(values.mean()), 5), "ci95": [round(low, 5), round(high, 5)]}
    if rows and "parsed" in rows[0]:
        out["parse_rate"] = round(float(np.mean([r["parsed"] for r in rows])), 4)
    latencies = [r["latency_s"] for r in rows if r.get("latency_s") is not None and not r.get("cached")]
    all_latencies = [r["latency_s"] for r in rows if r.get("latency_s") is not None]
    if all_latencies:
        out["latency_s"] = {"mean": round(float(np.mean(all_latencies)), 4),
                            "p50": round(float(np.median(all_latencies)), 4),
                            "p95": round(float(np.quantile(all_latencies, 0.95)), 4),
                            "computed_this_run": len(latencies)}
    tokens = [r["tokens"] for r in rows if r.get("tokens") is not None]
    out["tokens_per_request"] = round(float(np.mean(tokens)), 1) if tokens else None
    return out


def with_request_metrics(rows: Sequence[Row]) -> list[Row]:
    """Latency and tokens as per-unit metrics too, so they get paired differences like the rest."""
    out = []
    for r in rows:
        extra = {"latency_s": float(r["latency_s"])} if r.get("latency_s") is not None else {}
        if r.get("tokens") is not None:
            extra["tokens"] = float(r["tokens"])
        out.append({**r, "metrics": {**r["metrics"], **extra}})
    return out


def worse_than_baseline(differences: Sequence[dict[str, Any]], metric: str, alpha: float = 0.05) -> list[str]:
    """Variants significantly worse than the baseline on `metric` (for latency, tokens and error counts,
    higher is worse)."""
    worse = []
    for d in differences:
        if d["metric"] != metric:
            continue
        lower_better = metric in LOWER_IS_BETTER
        if d["p_value"] < alpha and ((d["ci_low"] > 0) if lower_better else (d["ci_high"] < 0)):
            worse.append(f"{d['entry']}: {metric} {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], "
                         f"p = {d['p_value']:.4f}")
    return worse
