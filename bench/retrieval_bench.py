"""Chroma query latency against exact numpy search on the same vectors, and Chroma's recall@50."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from agent.assemble import dataset_namespace, open_store
from agent.settings import Settings
from index.store import IndexStore, Space

TOP = 50


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def _one(store: IndexStore, space: Space, metric: str, repeats: int, seed: int,
         probes: np.ndarray | None = None) -> dict[str, Any]:
    """Chroma against exact numpy for `probes` (or perturbed stored vectors): time and recall of the top-50."""
    id_list, matrix = store.vectors(space)
    ids = np.asarray(id_list)
    rng = np.random.default_rng(seed)
    if probes is None:
        queries = matrix[rng.integers(0, len(matrix), repeats)] + rng.normal(0, 0.01, (repeats, matrix.shape[1]))
    else:
        queries = probes[rng.integers(0, len(probes), repeats)]
    queries = queries.astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-12) if metric == "cosine" else 1.0
    matrix_n = matrix / norms
    chroma_t: list[float] = []
    exact_t: list[float] = []
    recalls: list[float] = []
    for q in queries[:5]:
        store.nearest(space, q[None, :], TOP)
    for q in queries:
        t0 = time.perf_counter()
        got = [hit.id for hit in store.nearest(space, q[None, :], TOP)[0]]
        chroma_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = matrix_n @ (q / np.linalg.norm(q) if metric == "cosine" else q)
        top = np.argpartition(-scores, TOP)[:TOP]
        exact = ids[top[np.argsort(-scores[top])]]
        exact_t.append(time.perf_counter() - t0)
        recalls.append(len(set(got) & set(exact.tolist())) / TOP)
    chroma_ms, exact_ms = _percentiles(chroma_t), _percentiles(exact_t)
    return {"vectors": len(ids), "dims": int(matrix.shape[1]), "space": metric, "chroma": chroma_ms,
            "exact_numpy": exact_ms,
            "p50_ratio_chroma_over_exact": round(chroma_ms["p50_ms"] / exact_ms["p50_ms"], 2),
            "p95_ratio_chroma_over_exact": round(chroma_ms["p95_ms"] / exact_ms["p95_ms"], 2),
            "recall_at_50_vs_exact": round(float(np.mean(recalls)), 4)}


def bench_retrieval(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    namespace = dataset_namespace(settings)
    store = open_store(settings, namespace)
    store.require_complete()
    return {"benchmark": "retrieval", "namespace": namespace, "chroma_mode": settings.index.chroma,
            "queries": args.repeats, "top_k": TOP,
            "text_items": _one(store, "text", "cosine", args.repeats, 0),
            "collab_items": _one(store, "collab", "ip", args.repeats, 1),
            # what the collaborative generator sends: users' history vectors
            "collab_items_history_queries": _one(store, "collab", "ip", args.repeats, 2, store.vectors("users")[1])}
