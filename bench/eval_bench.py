"""Wall time of the full leave-one-out evaluation of the fused ranker."""

from __future__ import annotations

import argparse
import time
from typing import Any

from agent.settings import Settings
from eval.harness import evaluate, prepare


def bench_eval(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    dataset = settings.data.dataset
    started = time.perf_counter()
    prepared = prepare(settings, dataset, "loo", progress=False)
    prepare_s = time.perf_counter() - started
    result = evaluate(prepared, "fused", "test", settings, dataset, progress=False)
    total = time.perf_counter() - started
    return {"benchmark": "eval", "dataset": dataset, "protocol": "loo", "ranker": "fused",
            "users": result["users"], "prepare_s": round(prepare_s, 2), "ranking_s": result["seconds"],
            "total_s": round(total, 2), "users_per_s": round(result["users"] / result["seconds"], 1),
            "recall@10": result["metrics"]["recall@10"]["value"], "ndcg@10": result["metrics"]["ndcg@10"]["value"]}
