"""The index as the runtime sees it: item metadata, collaborative parts and vectors kept in memory.

Loaded once: from the files beside an embedded index (index.files), from Chroma's metadata for a server's.
Vector queries still go to Chroma; the sparse item-to-item graphs and the query-side vectors live in memory
because each request touches a few rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from agent.filters import Filters, matches
from agent.settings import NEARBY_WINDOW
from index.collab import History, nearby_graph
from index.files import paused_gc
from index.store import IndexStore


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
        rows = store.catalog()
        with paused_gc():  # a million entries: see index.files.paused_gc
            self.entries: dict[str, CatalogEntry] = {row.id: CatalogEntry(row.id, row.title, row.attributes)
                                                     for row in rows}
        graph = store.collab_graph()
        self.ids: list[str] = graph.ids
        self.position = {item_id: i for i, item_id in enumerate(self.ids)}
        self.popularity = graph.popularity
        self.cooccurrence = graph.cooccurrence
        self.transitions = graph.transitions
        self.query_vectors = graph.query_vectors  # row k for ids[k]

    @property
    def noun(self) -> str:
        """What one item is ("movie", "artist", "item"), as the dataset's loader named it."""
        return str(self.state.get("item_noun") or "item")

    @cached_property
    def popularity_order(self) -> np.ndarray:
        """Positions from the most to the least popular (ties by position)."""
        return np.argsort(-self.popularity, kind="stable")

    @cached_property
    def popularity_percentile(self) -> np.ndarray:
        """Each position's popularity as a percentile in [0, 1] (1 = the most popular item)."""
        order = np.argsort(np.argsort(self.popularity, kind="stable"), kind="stable")
        return order / max(len(order) - 1, 1)

    @cached_property
    def descriptive_attribute(self) -> str | None:
        """The categorical attribute most items have (genres for movies, tags for artists), or None."""
        coverage: dict[str, int] = {}
        values: dict[str, set[str]] = {}
        for entry in self.entries.values():
            for key, value in entry.attributes.items():
                if isinstance(value, (list, str)) and value:
                    coverage[key] = coverage.get(key, 0) + 1
                    values.setdefault(key, set()).update(value if isinstance(value, list) else [value])
        # an attribute with a value per item (a SKU name, say) describes nothing shared
        uses: dict[str, int] = {}
        for entry in self.entries.values():
            for k, value in entry.attributes.items():
                if k in values:
                    uses[k] = uses.get(k, 0) + (len(value) if isinstance(value, list) else 1)
        shared = [k for k in coverage if uses[k] >= 2 * len(values[k])]
        return max(shared, key=lambda k: (coverage[k], k)) if shared else None

    def descriptive_values(self, item_id: str) -> list[Any]:
        """An item's values of the descriptive attribute ([] without one, or for an unknown item)."""
        entry = self.entries.get(item_id)
        value = entry.attributes.get(self.descriptive_attribute) if entry and self.descriptive_attribute else None
        return list(value) if isinstance(value, list) else [value] if value else []

    def sequences(self) -> list[History]:
        """The stored users' histories as catalog positions, oldest first (items no longer in the catalog left
        out; `user` is the row, not the id). Read from the store for each use, not kept: what needs every
        interaction (the dates, the nearby graph) keeps its own compact result."""
        out = []
        for row, history in enumerate(self.store.histories()):
            kept = [(self.position[item], time) for item, time in history if item in self.position]
            out.append(History(str(row), np.array([p for p, _ in kept], dtype=np.int64),
                               np.array([t for _, t in kept], dtype=np.int64)))
        return out

    @cached_property
    def interaction_times(self) -> tuple[np.ndarray, np.ndarray]:
        """The indexed interactions' timestamps by item, as (starts, times): position p's are
        times[starts[p]:starts[p + 1]], sorted."""
        sequences, empty = self.sequences(), np.zeros(0, dtype=np.int64)
        positions = np.concatenate([h.items for h in sequences]) if sequences else empty
        times = np.concatenate([h.timestamps for h in sequences]) if sequences else empty
        order = np.lexsort((times, positions))
        starts = np.searchsorted(positions[order], np.arange(len(self.ids) + 1))
        return starts, times[order]

    @cached_property
    def nearby(self) -> sp.csr_matrix:
        """Session co-occurrence over the stored histories: items at most NEARBY_WINDOW positions apart in
        someone's history, cosine-weighted, every pair kept (index.collab.nearby_graph). Built on first use:
        0.3 s and 12 MB for ml-latest-small's 100k interactions; the window narrows on a larger index."""
        return nearby_graph(self.sequences(), len(self.ids), NEARBY_WINDOW)

    @cached_property
    def latest_time(self) -> int:
        """The latest indexed interaction's timestamp (0 without any): "now" for a request without times."""
        times = self.interaction_times[1]
        return int(times.max()) if len(times) else 0

    @property
    def timed(self) -> bool:
        """Whether the indexed timestamps are real times, not an order standing in for them (Last.fm's file
        order, ReDial's turns): only then do an item's dates mean anything. An index built before the flag
        was stored counts as timed when its latest interaction is after 1973 (row numbers are far below)."""
        return bool(self.state.get("timed", self.latest_time >= 10**8))

    @cached_property
    def titles(self) -> dict[str, str]:
        """Item id to title, for prompts and grounding checks."""
        return {item_id: entry.title for item_id, entry in self.entries.items()}

    @cached_property
    def text_vectors(self) -> dict[str, np.ndarray]:
        ids, matrix = self.store.vectors("text")
        return dict(zip(ids, matrix, strict=True))

    def warm(self) -> None:
        """Read now what turns read lazily (the text vectors come from Chroma: about 0.5 s for 10k items)."""
        for name in ("popularity_order", "popularity_percentile", "descriptive_attribute", "titles", "text_vectors"):
            getattr(self, name)

    def allowed(self, filters: Filters | None) -> set[str] | None:
        """Item ids passing the filters, or None when there are no filters."""
        if not filters:
            return None
        return {i for i, entry in self.entries.items() if matches(entry.attributes, filters)}

    def user_history(self, user: str) -> tuple[list[str], list[int]]:
        """A known user's items and timestamps, oldest first (UnknownUser otherwise)."""
        return self.store.user_history(user)
