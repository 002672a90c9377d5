"""Index build throughput against the bare encoder on the same texts, and the cost of a no-op rebuild."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.assemble import index_dataset
from agent.settings import Settings
from index.embedder import Embedder
from index.loaders import load_dataset
from index.text import item_text


def bench_index(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    dataset = load_dataset(settings.data.dataset, settings.data.data_dir)
    embedder = Embedder(settings.index.embedder)
    texts = [item_text(item) for item in dataset.items.values()]
    embedder.encode(texts[:64])  # warm up
    started = time.perf_counter()
    embedder.encode(texts)
    bare = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="recagent-bench-") as tmp:
        scratch = settings.model_copy(update={"index": settings.index.model_copy(
            update={"chroma": "embedded", "path": Path(tmp) / "chroma"})})
        full = index_dataset(scratch, dataset, embedder, progress=False)
        again = index_dataset(scratch, dataset, embedder, progress=False)
    n = len(texts)
    return {
        "benchmark": "index", "dataset": dataset.name, "items": n,
        "bare_encoder_items_per_s": round(n / bare, 1),
        "build_items_phase_items_per_s": round(n / full.timings["items"], 1),
        "items_phase_vs_bare_encoder": round(bare / full.timings["items"], 3),
        "full_build_s": round(full.seconds, 2), "collab_fit_and_write_s": round(full.timings["collab"], 2),
        "rebuild_unchanged_s": round(again.seconds, 3), "rebuild_embedded": again.embedded,
        "rebuild_fraction_of_full": round(again.seconds / full.seconds, 4),
    }
