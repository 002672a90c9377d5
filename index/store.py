"""Chroma collections of one index namespace, and the build bookkeeping that keeps them consistent.

A namespace (the dataset name, or e.g. 'ml-latest-small-loo' for evaluation) has four collections:
  <ns>-items     text embeddings, document = item text, metadata = title, attributes, content hash
  <ns>-collab    collaborative item vectors V (inner product), metadata = popularity and neighbour lists
  <ns>-collabq   the query-side vectors Q of the same factorisation
  <ns>-users     one vector per user (its recency-weighted history), document = the history as JSON
The items collection's metadata records the build state: 'building' while a build runs and
'complete' with the data and settings hashes once it finished. Readers refuse an unfinished index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.config import IndexConfig
from index.errors import IndexStateError

BATCH = 1000


def chroma_client(config: IndexConfig) -> Any:
    """An embedded PersistentClient, or an HttpClient for `chroma run` when config.chroma == 'server'."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if config.chroma == "server":
        try:
            return chromadb.HttpClient(host=config.host, port=config.port, settings=chroma_settings)
        except Exception as exc:  # chromadb raises ValueError or connection errors
            raise IndexStateError(f"cannot reach the Chroma server at {config.host}:{config.port} "
                                  f"({exc}); start it with 'chroma run --path DIR --host {config.host} "
                                  f"--port {config.port}' or set index.chroma = 'embedded'") from None
    config.path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(config.path), settings=chroma_settings)


def batches(n: int, size: int = BATCH) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass(frozen=True)
class Hit:
    id: str
    score: float


class IndexStore:
    """The collections of one namespace, for building and for querying."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def name(self, part: str) -> str:
        return f"{self.namespace}-{part}"

    def collection(self, part: str, create: bool = False, space: str = "cosine") -> Any:
        if create:
            return self.client.get_or_create_collection(self.name(part), embedding_function=None,
                                                        configuration={"hnsw": {"space": space}})
        try:
            return self.client.get_collection(self.name(part), embedding_function=None)
        except Exception:
            raise IndexStateError(f"index {self.namespace!r} has no collection {self.name(part)!r}; run "
                                  f"'recagent index build' first") from None

    def drop(self, part: str) -> None:
        if self.name(part) in {c.name if hasattr(c, "name") else c for c in self.client.list_collections()}:
            self.client.delete_collection(self.name(part))

    # build state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            return dict(self.collection("items").metadata or {})
        except IndexStateError:
            return {}

    def set_state(self, **values: Any) -> None:
        items = self.collection("items", create=True)
        meta = {k: v for k, v in (items.metadata or {}).items() if not k.startswith("hnsw:")}
        meta.update(values)
        items.modify(metadata=meta)

    def require_complete(self) -> dict[str, Any]:
        state = self.state()
        if not state:
            raise IndexStateError(f"index {self.namespace!r} does not exist; run 'recagent index build'")
        if state.get("state") != "complete":
            raise IndexStateError(f"index {self.namespace!r} is unfinished (a build was interrupted); "
                                  f"run 'recagent index build' to repair it")
        return state

    # reading ------------------------------------------------------------------------------------

    def get_all(self, part: str, include: Sequence[str]) -> dict[str, Any]:
        collection = self.collection(part)
        total = collection.count()
        out: dict[str, list[Any]] = {"ids": []}
        for key in include:
            out[key] = []
        for window in batches(total, 5000):
            got = collection.get(include=list(include), limit=window.stop - window.start, offset=window.start)
            out["ids"].extend(got["ids"])
            for key in include:
                values = got[key]
                out[key].extend(list(values) if values is not None else [])
        return out

    def query(self, part: str, vectors: np.ndarray, k: int, ids: Sequence[str] | None = None
              ) -> list[list[Hit]]:
        """Nearest neighbours of each vector, as similarity (1 - distance for cosine, dot for ip)."""
        collection = self.collection(part)
        k = min(k, collection.count() if ids is None else len(ids))
        if k <= 0:
            return [[] for _ in range(len(vectors))]
        result = collection.query(query_embeddings=np.asarray(vectors, dtype=np.float32), n_results=k,
                                  ids=list(ids) if ids is not None else None, include=["distances"])
        return [[Hit(i, 1.0 - float(d)) for i, d in zip(id_row, dist_row, strict=True)]
                for id_row, dist_row in zip(result["ids"], result["distances"], strict=True)]


def encode_neighbors(ids: Sequence[str], weights: Sequence[float]) -> str:
    return json.dumps([[i, round(float(w), 6)] for i, w in zip(ids, weights, strict=True)],
                      separators=(",", ":"))


def decode_neighbors(text: str) -> list[tuple[str, float]]:
    return [(str(i), float(w)) for i, w in json.loads(text)] if text else []
