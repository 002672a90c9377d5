"""The index's storage layout in Chroma, owned here: nothing outside index/ names a collection.

A namespace (a dataset's name, or e.g. 'ml-latest-small-loo' for an evaluation) has four collections:
  <ns>-items     text embeddings, document = item text, metadata = title, attributes, content hash
  <ns>-collab    collaborative item vectors V (inner product), metadata = popularity and neighbour lists
  <ns>-collabq   the query-side vectors Q of the same factorisation
  <ns>-users     one vector per user (its recency-weighted history), document = the history as JSON
The items collection's metadata records the build state: 'building' while a build runs and
'complete' with the data and settings hashes once it finished. Readers refuse an unfinished index.
An embedded store also keeps what opening an index reads (the catalog, popularity, the query vectors and the
two graphs) as files beside the collections (index.files), their digests in the state; a Chroma server's
index, and one built before the files existed, is read from the collections' metadata instead.
Everything else reads and writes through the typed methods of IndexStore.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from core.errors import IndexStateError, UnknownUser
from index.config import HnswConfig, IndexConfig
from index.files import CatalogRow, CollabGraph, IndexFiles, local_folder

log = logging.getLogger("recagent.index")

BATCH = 1000
Space = Literal["text", "collab", "users"]  # the vector spaces a query can search
_PART = {"text": "items", "collab": "collab", "users": "users"}
_COLLAB_PARTS = ("collab", "collabq", "users")  # written together from the interactions
Purpose = Literal["dataset", "eval", "train", "source"]  # source: another dataset's view (index.transfer)


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


def namespace_of(dataset: str) -> str:
    """The namespace a dataset is indexed under: its folder's name, whether given by name or path."""
    return Path(dataset).name


def indexed_namespaces(client: Any, purpose: Purpose = "dataset") -> list[str]:
    """Namespaces with a finished index built for `purpose` (datasets, not evaluation copies)."""
    names = [c.name if hasattr(c, "name") else str(c) for c in client.list_collections()]
    found = sorted(n[: -len("-items")] for n in names if n.endswith("-items"))
    out = []
    for namespace in found:
        state = IndexStore(client, namespace).state()
        if state.get("state") == "complete" and state.get("purpose", "dataset") == purpose:
            out.append(namespace)
    return out


def batches(n: int, size: int = BATCH) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass(frozen=True)
class Hit:
    id: str
    score: float


def _encode_row(matrix: sp.csr_matrix, row: int) -> str:
    """One row of a graph as base64 of int32 positions then float32 weights (compact for big catalogs)."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    blob = matrix.indices[start:end].astype("<i4").tobytes() + matrix.data[start:end].astype("<f4").tobytes()
    return base64.b64encode(blob).decode("ascii")


def _decode_rows(texts: Sequence[str], position: dict[str, int], n: int) -> sp.csr_matrix:
    """A graph from its encoded rows; rows written by earlier versions as JSON [[id, weight], ...] too."""
    columns, weights, lengths = [], [], []
    for text in texts:
        if text.startswith("["):
            pairs = [(position[str(i)], float(w)) for i, w in json.loads(text) if str(i) in position]
            cols = np.array([c for c, _ in pairs], dtype=np.int32)
            vals = np.array([w for _, w in pairs], dtype=np.float32)
        else:
            blob = base64.b64decode(text) if text else b""
            half = len(blob) // 2
            cols, vals = np.frombuffer(blob[:half], "<i4"), np.frombuffer(blob[half:], "<f4")
        columns.append(cols)
        weights.append(vals)
        lengths.append(len(cols))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return sp.csr_matrix((np.concatenate(weights) if weights else np.zeros(0, np.float32),
                          np.concatenate(columns) if columns else np.zeros(0, np.int32), indptr), shape=(n, n))


def _decode_history(document: str) -> list[tuple[str, int]]:
    """A stored user's (item, timestamp) pairs from their document (add_users writes it)."""
    return [(str(i), int(t)) for i, t in json.loads(document)]


def _item_metadata(title: str, attributes: Mapping[str, Any], digest: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"title": title, "_hash": digest, "_attrs": json.dumps(attributes)}
    for key, value in attributes.items():  # flat copies, so Chroma's own filters could use them
        if key.startswith("_") or key == "title":
            continue
        if isinstance(value, list):
            if value:
                meta[key] = [str(v) for v in value]
        else:
            meta[key] = value
    return meta


class IndexStore:
    """The collections of one namespace, for building and for querying."""

    def __init__(self, client: Any, namespace: str, hnsw: HnswConfig | None = None, use_files: bool = True) -> None:
        """`use_files=False` reads and writes only the collections, as a Chroma server's index is kept."""
        self.client = client
        self.namespace = namespace
        self.hnsw = hnsw or HnswConfig()
        folder = local_folder(client, namespace) if use_files else None
        self.files = IndexFiles(folder, namespace) if folder is not None else None

    def _name(self, part: str) -> str:
        return f"{self.namespace}-{part}"

    def _collection(self, part: str, create: bool = False, space: str = "cosine") -> Any:
        if create:
            collection = self.client.get_or_create_collection(
                self._name(part), embedding_function=None, configuration={"hnsw": {"space": space,
                                                                                   **self.hnsw.model_dump()}})
            self._sync_search(collection)
            return collection
        try:
            return self.client.get_collection(self._name(part), embedding_function=None)
        except Exception:
            raise IndexStateError(f"index {self.namespace!r} has no collection {self._name(part)!r}; run "
                                  f"'recagent index build' first") from None

    def _sync_search(self, collection: Any) -> None:
        hnsw = ((collection.configuration_json or {}).get("hnsw") or {}) if hasattr(
            collection, "configuration_json") else {}
        if hnsw.get("ef_search") not in (None, self.hnsw.ef_search):  # made by an earlier build
            collection.modify(configuration={"hnsw": {"ef_search": self.hnsw.ef_search}})

    def sync_search_settings(self) -> None:
        """Give every collection the configured ef_search (a search setting: no rebuild needed). Chroma
        applies it in processes that open the collection afterwards, not in one that has it loaded."""
        for part in ("items", *_COLLAB_PARTS):
            with contextlib.suppress(IndexStateError):  # a part this index does not have (yet)
                self._sync_search(self._collection(part))

    def _drop(self, part: str) -> None:
        if self._name(part) in {c.name if hasattr(c, "name") else c for c in self.client.list_collections()}:
            self.client.delete_collection(self._name(part))

    def _get_all(self, part: str, include: Sequence[str]) -> dict[str, Any]:
        collection = self._collection(part)
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

    # build state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            return dict(self._collection("items").metadata or {})
        except IndexStateError:
            return {}

    def set_state(self, **values: Any) -> None:
        items = self._collection("items", create=True)
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

    # writing (index.build) ----------------------------------------------------------------------

    def item_hashes(self) -> dict[str, str]:
        """Content hash of every stored item text (empty for a new namespace)."""
        self._collection("items", create=True)
        existing = self._get_all("items", include=["metadatas"])
        return {i: str((m or {}).get("_hash")) for i, m in zip(existing["ids"], existing["metadatas"], strict=True)}

    def upsert_items(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str], titles: Sequence[str],
                     attributes: Sequence[Mapping[str, Any]], hashes: Sequence[str]) -> None:
        self._collection("items", create=True).upsert(
            ids=list(ids), embeddings=vectors, documents=list(texts),
            metadatas=[_item_metadata(t, a, h) for t, a, h in zip(titles, attributes, hashes, strict=True)])

    def delete_items(self, ids: Sequence[str]) -> None:
        collection = self._collection("items")
        for window in batches(len(ids)):
            collection.delete(ids=list(ids[window]))

    def reset_collab(self) -> None:
        """Drop the collaborative collections before they are written again."""
        for part in _COLLAB_PARTS:
            self._drop(part)

    def add_collab(self, ids: Sequence[str], first: int, item_vectors: np.ndarray, query_vectors: np.ndarray,
                   popularity: Sequence[float] | np.ndarray, cooccurrence: sp.csr_matrix,
                   transitions: sp.csr_matrix) -> None:
        """Items at build positions first, first+1, ...; the graphs' rows and columns are build positions."""
        metas = [{"popularity": float(p), "pos": first + k, "cooc": _encode_row(cooccurrence, first + k),
                  "next": _encode_row(transitions, first + k)} for k, p in enumerate(popularity)]
        self._collection("collab", create=True, space="ip").add(ids=list(ids), embeddings=item_vectors,
                                                                metadatas=metas)
        self._collection("collabq", create=True, space="ip").add(ids=list(ids), embeddings=query_vectors)

    def add_users(self, users: Sequence[str], vectors: np.ndarray,
                  histories: Sequence[Sequence[tuple[str, int]]]) -> None:
        documents = [json.dumps([[i, int(t)] for i, t in h], separators=(",", ":")) for h in histories]
        self._collection("users", create=True, space="cosine").add(
            ids=list(users), embeddings=vectors, documents=documents,
            metadatas=[{"interactions": len(h)} for h in histories])

    # reading -------------------------------------------------------------------------------------

    def recorded_files(self) -> dict[str, str] | None:
        """The files' digests the last complete build recorded; None where opening reads Chroma's metadata
        (a Chroma server, or an index built before the files existed)."""
        recorded = str(self.state().get("files") or "")
        return dict(json.loads(recorded)) if recorded and self.files is not None else None

    def catalog(self) -> list[CatalogRow]:
        recorded = self.recorded_files()
        return self.files.read_catalog(recorded) if recorded is not None and self.files else self.metadata_catalog()

    def collab_graph(self) -> CollabGraph:
        recorded = self.recorded_files()
        if recorded is not None and self.files is not None:
            return self.files.read_collab(recorded)
        if self.files is not None:
            log.warning("index %r was built before its graph files: reading Chroma's metadata (slow on a large "
                        "catalog); 'recagent index build' writes them without embedding anything", self.namespace)
        return self.metadata_collab_graph()

    def metadata_catalog(self) -> list[CatalogRow]:
        """The catalog from the items collection's metadata."""
        items = self._get_all("items", include=["metadatas"])
        rows = []
        for item_id, meta in zip(items["ids"], items["metadatas"], strict=True):
            meta = meta or {}
            rows.append(CatalogRow(item_id, str(meta.get("title", item_id)), json.loads(meta.get("_attrs", "{}")),
                                   str(meta.get("_hash", ""))))
        return rows

    def metadata_collab_graph(self) -> CollabGraph:
        """The collaborative side from the collections: neighbour lists from the metadata, Q from collabq."""
        collab = self._get_all("collab", include=["metadatas"])
        metas = [m or {} for m in collab["metadatas"]]
        order = np.argsort([int(m.get("pos", k)) for k, m in enumerate(metas)], kind="stable")
        ids = [str(collab["ids"][k]) for k in order]
        metas = [metas[k] for k in order]
        position = {item: k for k, item in enumerate(ids)}
        query_ids, query = self.vectors("collab_query")
        q = np.zeros((len(ids), query.shape[1] if query.size else 0), dtype=np.float32)
        if query_ids:
            q[[position[i] for i in query_ids]] = query
        return CollabGraph(ids, np.array([float(m.get("popularity", 0.0)) for m in metas], dtype=np.float32), q,
                           _decode_rows([str(m.get("cooc", "")) for m in metas], position, len(ids)),
                           _decode_rows([str(m.get("next", "")) for m in metas], position, len(ids)))

    def vectors(self, space: Space | Literal["collab_query"]) -> tuple[list[str], np.ndarray]:
        """Every vector of a space, as (ids, float32 matrix)."""
        part = "collabq" if space == "collab_query" else _PART[space]
        got = self._get_all(part, include=["embeddings"])
        matrix = np.asarray(got["embeddings"], dtype=np.float32) if len(got["embeddings"]) else np.zeros((0, 0))
        return list(got["ids"]), matrix

    def user_history(self, user: str) -> tuple[list[str], list[int]]:
        """A user's items and timestamps, oldest first."""
        got = self._collection("users").get(ids=[user], include=["documents"])
        if not got["ids"]:
            raise UnknownUser(user, self.namespace)
        pairs = _decode_history(got["documents"][0])
        return [i for i, _ in pairs], [t for _, t in pairs]

    def histories(self) -> list[list[tuple[str, int]]]:
        """Every stored user's (item, timestamp) pairs, oldest first ([] for an index without users)."""
        try:
            documents = self._get_all("users", include=["documents"])["documents"]
        except IndexStateError:
            return []
        return [_decode_history(d) for d in documents]

    def user_vector(self, user: str) -> np.ndarray:
        got = self._collection("users").get(ids=[user], include=["embeddings"])
        if not got["ids"]:
            raise UnknownUser(user, self.namespace)
        return np.asarray(got["embeddings"][0], dtype=np.float32)

    def user_ids(self, limit: int | None = None) -> list[str]:
        collection = self._collection("users")
        return list(collection.get(include=[], limit=limit)["ids"])

    def count(self, space: Space) -> int:
        return int(self._collection(_PART[space]).count())

    def nearest(self, space: Space, vectors: np.ndarray, k: int, ids: Sequence[str] | None = None
                ) -> list[list[Hit]]:
        """Nearest neighbours of each vector, as similarity (1 - distance for cosine, dot for ip)."""
        collection = self._collection(_PART[space])
        # no count() to clamp k: Chroma returns fewer when it has fewer, and count() is a scan of the
        # collection's rows (53 ms at 1M items, more than the HNSW search itself)
        k = min(k, len(ids)) if ids is not None else k
        if k <= 0:
            return [[] for _ in range(len(vectors))]
        result = collection.query(query_embeddings=np.asarray(vectors, dtype=np.float32), n_results=k,
                                  ids=list(ids) if ids is not None else None, include=["distances"])
        return [[Hit(i, 1.0 - float(d)) for i, d in zip(id_row, dist_row, strict=True)]
                for id_row, dist_row in zip(result["ids"], result["distances"], strict=True)]
