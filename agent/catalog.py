"""The index as the runtime sees it: item metadata, collaborative parts and vectors kept in memory.

Loaded once from Chroma (embedded or server). Vector queries still go to Chroma; the sparse
item-to-item graphs and the query-side vectors live in memory because each request touches a few rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from agent.filters import Filters, matches
from index.errors import IndexStateError
from index.store import IndexStore, decode_neighbors


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    title: str
    attributes: dict[str, Any]


class LoadedIndex:
    """Read-side view of one namespace. Positions index `ids`."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.state = store.require_complete()
        items = store.get_all("items", include=["metadatas"])
        self.entries: dict[str, CatalogEntry] = {}
        for item_id, meta in zip(items["ids"], items["metadatas"], strict=True):
            meta = meta or {}
            self.entries[item_id] = CatalogEntry(item_id, str(meta.get("title", item_id)),
                                                 json.loads(meta.get("_attrs", "{}")))
        collab = store.get_all("collab", include=["metadatas"])
        self.ids: list[str] = list(collab["ids"])
        self.position = {item_id: i for i, item_id in enumerate(self.ids)}
        n = len(self.ids)
        self.popularity = np.zeros(n, dtype=np.float32)
        cooc_rows: list[tuple[int, int, float]] = []
        next_rows: list[tuple[int, int, float]] = []
        for pos, meta in enumerate(collab["metadatas"]):
            meta = meta or {}
            self.popularity[pos] = float(meta.get("popularity", 0.0))
            cooc_rows.extend((pos, self.position[j], w) for j, w in decode_neighbors(meta.get("cooc", "")))
            next_rows.extend((pos, self.position[j], w) for j, w in decode_neighbors(meta.get("next", "")))
        self.cooccurrence = _sparse(cooc_rows, n)
        self.transitions = _sparse(next_rows, n)
        query = store.get_all("collabq", include=["embeddings"])
        order = [self.position[i] for i in query["ids"]]
        q = np.zeros((n, len(query["embeddings"][0]) if query["embeddings"] else 0), dtype=np.float32)
        if len(order):
            q[order] = np.asarray(query["embeddings"], dtype=np.float32)
        self.query_vectors = q

    @cached_property
    def titles(self) -> dict[str, str]:
        """Item id to title, for prompts and grounding checks."""
        return {item_id: entry.title for item_id, entry in self.entries.items()}

    @cached_property
    def text_vectors(self) -> dict[str, np.ndarray]:
        items = self.store.get_all("items", include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(items["ids"], items["embeddings"],
                                                                    strict=True)}

    def allowed(self, filters: Filters | None) -> set[str] | None:
        """Item ids passing the filters, or None when there are no filters."""
        if not filters:
            return None
        return {i for i, entry in self.entries.items() if matches(entry.attributes, filters)}

    def user_history(self, user: str) -> tuple[list[str], list[int]]:
        got = self.store.collection("users").get(ids=[user], include=["documents"])
        if not got["ids"]:
            raise IndexStateError(f"unknown user {user!r} in index {self.store.namespace!r}")
        pairs = json.loads(got["documents"][0])
        return [str(i) for i, _ in pairs], [int(t) for _, t in pairs]


def _sparse(triples: list[tuple[int, int, float]], n: int) -> sp.csr_matrix:
    if not triples:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = zip(*triples, strict=True)
    return sp.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(n, n))
