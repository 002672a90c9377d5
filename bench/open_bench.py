"""Opening an index of N items from its files, without building one (a 1M-item build takes about 3 h here):
the catalog of `recagent data synth`, graphs with the given neighbours per row and random query vectors,
written as the build writes them (index.files), then the agent's index view (LoadedIndex) and its catalog
vocabulary timed. `python -m bench.open_bench --items 1000000 --workdir var/bench-open` prints JSON.

The per-row counts default to the 10k synthetic build's (94 co-occurrence and 8 transition neighbours per
item; `index.neighbors` caps both at 100) and 256-d query vectors (`index.collab_dims`).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from agent.assemble import load_index, open_store
from agent.settings import Settings
from agent.understanding import CatalogVocabulary
from index.config import IndexConfig
from index.files import CatalogRow, CollabGraph
from index.loaders import load_dataset
from index.synth import synthesize
from index.text import content_hash, item_text


def _graph(n: int, per_row: int, rng: np.random.Generator) -> sp.csr_matrix:
    """n x n with `per_row` random columns per row (repeats summed), float32 weights."""
    columns = np.sort(rng.integers(0, n, size=(n, per_row)), axis=1)
    graph = sp.csr_matrix((rng.random(n * per_row, dtype=np.float32), columns.ravel().astype(np.int32),
                           np.arange(0, n * per_row + 1, per_row, dtype=np.int64)), shape=(n, n))
    graph.sum_duplicates()  # the rare repeated column of a large random row
    return graph


def _timed(what: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    what[name] = round(now - started, 2)
    return now


def bench_open(items: int, workdir: Path, cooccurrence: int, transitions: int, dims: int) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    rng = np.random.default_rng(0)
    synthesize(workdir / "data" / "synth-open", items, 1000, 5000, seed=0)
    dataset = load_dataset("synth-open", workdir / "data")
    rows = [CatalogRow(item.id, item.title, dict(item.attributes), content_hash(item_text(item), "default"))
            for item in dataset.items.values()]
    ids = [row.id for row in rows]
    graph = CollabGraph(ids, rng.random(items, dtype=np.float32) * 100, rng.standard_normal((items, dims),
                        dtype=np.float32), _graph(items, cooccurrence, rng), _graph(items, transitions, rng))
    store = open_store(Settings(index=IndexConfig(path=workdir / "chroma")), "synth-open")
    assert store.files is not None
    written = {**store.files.write_catalog(rows), **store.files.write_collab(graph)}
    store.set_state(state="complete", files=json.dumps(written), items=items)
    del rows, graph, dataset
    sizes = {name: round((store.files.folder / name).stat().st_size / 2**20, 1) for name in written}
    parts: dict[str, float] = {}
    started = time.perf_counter()
    store.files.problems(written, sorted(written))
    started = _timed(parts, "digests_s", started)
    store.files.load_catalog()
    started = _timed(parts, "catalog_s", started)
    store.files.load_collab()
    _timed(parts, "graphs_s", started)
    out: dict[str, Any] = {"items": items, "files_mb": sizes, "parts_s": parts}
    started = time.perf_counter()
    index = load_index(store)
    started = _timed(out, "open_index_s", started)
    CatalogVocabulary(index)
    _timed(out, "catalog_vocabulary_s", started)
    out["cooccurrence_nnz"], out["transitions_nnz"] = int(index.cooccurrence.nnz), int(index.transitions.nnz)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-open"))
    parser.add_argument("--cooccurrence", type=int, default=94, help="co-occurrence neighbours per item")
    parser.add_argument("--transitions", type=int, default=8, help="transition neighbours per item")
    parser.add_argument("--dims", type=int, default=256, help="query vector dimensions")
    args = parser.parse_args()
    print(json.dumps(bench_open(args.items, args.workdir, args.cooccurrence, args.transitions, args.dims)))


if __name__ == "__main__":
    main()
