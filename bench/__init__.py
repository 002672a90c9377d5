"""Benchmarks that print JSON. Each compares against the limit measured in the same run, as a ratio."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agent.settings import Settings
from bench.eval_bench import bench_eval
from bench.health_bench import bench_health
from bench.index_bench import bench_index
from bench.rerank_bench import bench_rerank
from bench.retrieval_bench import bench_retrieval
from bench.scale_bench import bench_scale
from bench.turn_bench import bench_turn

BENCHMARKS: dict[str, Callable[[Settings, argparse.Namespace], dict[str, Any]]] = {
    "index": bench_index,
    "retrieval": bench_retrieval,
    "eval": bench_eval,
    "rerank": bench_rerank,
    "turn": bench_turn,
    "scale": bench_scale,
    "health": bench_health,
}
