"""Build or update an index namespace from a dataset.

Item texts are embedded only when their content hash changed; removed items are deleted. The
collaborative collections are rewritten only when the interactions or their settings changed. The
build marks the namespace 'building' first and 'complete' last, so a build killed midway is detected
by readers and repaired by the next build (which re-embeds only what is still missing). In an embedded
store the files that opening reads (index.files) are written, each atomically, before 'complete', which
records their digests; a file found missing or changed is written again from the collections.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from index.collab import fit_collab, user_histories
from index.config import IndexConfig
from index.dataset import Dataset, Item
from index.embedder import Embedder, embedder_name
from index.files import COLLAB_FILES, CatalogRow, CollabGraph
from index.store import IndexStore, Purpose, batches
from index.text import content_hash, item_text


@dataclass
class BuildReport:
    namespace: str
    items: int
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    collab_rebuilt: bool = False
    repaired: bool = False
    # the graph files: "written" (from this build's fit), "kept", "repaired" (missing, changed or never written:
    # written again from the collections, nothing refitted) or "none" (a Chroma server's index has none)
    graph_files: str = "none"
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def collab_fingerprint(dataset: Dataset, config: IndexConfig) -> str:
    h = hashlib.sha256(dataset.content_hash().encode())
    h.update(json.dumps([config.collab_dims, config.ease_lambda, config.neighbors, config.ease_max_items,
                         config.max_pairs, config.hnsw.ef_construction, config.hnsw.max_neighbors, "v2"]).encode())
    return h.hexdigest()[:16]


def build_index(dataset: Dataset, store: IndexStore, config: IndexConfig,
                embedder_factory: Callable[[], Embedder], progress: bool = True,
                purpose: Purpose = "dataset") -> BuildReport:
    """Bring the namespace up to date with `dataset`; `purpose` marks evaluation and training copies."""
    started = time.perf_counter()
    report = BuildReport(store.namespace, len(dataset.items))
    previous = store.state()
    report.repaired = previous.get("state") == "building"
    store.set_state(state="building", purpose=purpose)

    t0 = time.perf_counter()
    digests = _sync_items(dataset, store, embedder_name(config.embedder), embedder_factory, report, progress)
    report.timings["items"] = time.perf_counter() - t0

    fingerprint = collab_fingerprint(dataset, config)
    t0 = time.perf_counter()
    graph: CollabGraph | None = None
    if previous.get("collab_hash") != fingerprint or report.repaired or previous.get("state") != "complete":
        store.set_state(collab_hash="")
        graph = _write_collab(dataset, store, config, progress)
        report.collab_rebuilt = True
    report.timings["collab"] = time.perf_counter() - t0
    store.sync_search_settings()  # an ef_search changed since the collections were written

    t0 = time.perf_counter()
    files = _write_files(dataset, store, digests, graph, json.loads(str(previous.get("files") or "{}")), report)
    report.timings["files"] = time.perf_counter() - t0
    store.set_state(state="complete", collab_hash=fingerprint, data_hash=dataset.content_hash(),
                    items=len(dataset.items), embedder=embedder_name(config.embedder), item_noun=dataset.item_noun,
                    timed=dataset.timed, files=json.dumps(files, sort_keys=True) if files else "")
    report.seconds = time.perf_counter() - started
    return report


def _sync_items(dataset: Dataset, store: IndexStore, model_name: str, embedder_factory: Callable[[], Embedder],
                report: BuildReport, progress: bool) -> dict[str, str]:
    """Embed and write the items whose text changed, delete the removed ones; every item's content hash."""
    old_hash = store.item_hashes()
    embedder: Embedder | None = None
    pending: list[tuple[Item, str, str]] = []
    digests: dict[str, str] = {}
    for item in dataset.items.values():
        text = item_text(item)
        digest = digests[item.id] = content_hash(text, model_name)
        if old_hash.get(item.id) == digest:
            report.unchanged += 1
        else:
            pending.append((item, text, digest))
    removed = [i for i in old_hash if i not in dataset.items]
    store.delete_items(removed)
    report.deleted = len(removed)
    bar = tqdm(total=len(pending), desc="embedding items", unit="item", disable=not progress or not pending)
    for window in batches(len(pending), 256):
        chunk = pending[window]
        if embedder is None:
            embedder = embedder_factory()
        vectors = embedder.encode([text for _, text, _ in chunk])
        store.upsert_items([item.id for item, _, _ in chunk], vectors, [text for _, text, _ in chunk],
                           [item.title for item, _, _ in chunk], [item.attributes for item, _, _ in chunk],
                           [digest for _, _, digest in chunk])
        bar.update(len(chunk))
    bar.close()
    report.embedded = len(pending)
    return digests


def _write_files(dataset: Dataset, store: IndexStore, digests: dict[str, str], graph: CollabGraph | None,
                 recorded: dict[str, str], report: BuildReport) -> dict[str, str]:
    """Write the files opening reads (embedded stores only): the catalog every time, the graph files from this
    build's fit, or again from the collections where the recorded ones are missing or changed. Their digests."""
    if store.files is None:
        return {}
    written = store.files.write_catalog([CatalogRow(item.id, item.title, dict(item.attributes), digests[item.id])
                                         for item in dataset.items.values()])
    if graph is not None:
        written |= store.files.write_collab(graph)
        report.graph_files = "written"
    elif store.files.problems(recorded, COLLAB_FILES):  # the collections are complete: the build before says so
        written |= store.files.write_collab(store.metadata_collab_graph())
        report.graph_files = "repaired"
    else:
        written |= {name: recorded[name] for name in COLLAB_FILES}
        report.graph_files = "kept"
    return written


def _write_collab(dataset: Dataset, store: IndexStore, config: IndexConfig, progress: bool) -> CollabGraph:
    item_ids = list(dataset.items)
    histories = user_histories(dataset.interactions, item_ids)
    model = fit_collab(histories, item_ids, config)
    store.reset_collab()
    bar = tqdm(total=len(item_ids) + len(histories), desc="writing collaborative vectors", unit="row",
               disable=not progress)
    cooccurrence, transitions = model.cooccurrence.tocsr(), model.transitions.tocsr()
    for window in batches(len(item_ids)):
        store.add_collab(item_ids[window], window.start, model.item_vectors[window], model.query_vectors[window],
                         model.popularity[window], cooccurrence, transitions)
        bar.update(window.stop - window.start)
    for window in batches(len(histories)):
        chunk = histories[window]
        vectors = np.stack([model.history_vector(h.items, 0.9) for h in chunk])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        store.add_users([h.user for h in chunk], vectors,
                        [[(item_ids[p], int(t)) for p, t in zip(h.items, h.timestamps, strict=True)] for h in chunk])
        bar.update(len(chunk))
    bar.close()
    return CollabGraph(item_ids, model.popularity, model.query_vectors, cooccurrence, transitions)
