"""What opening an index reads, kept as files beside its Chroma collections (embedded stores).

Reading a 1M-item catalog and its neighbour lists back from Chroma's metadata as strings took 207 s; these
files load in seconds. One folder per namespace, `<chroma path>/recagent-files/<namespace>/`:
  catalog.parquet    id, title, attributes (JSON) and content hash of every item, in build order
  collab.npz         the collaborative build order: ids, popularity and the query-side vectors Q
  cooccurrence.npz   the item-to-item graph, scipy.sparse CSR over build positions
  transitions.npz    the next-item graph, the same way
Each file is written under a temporary name and renamed into place (os.replace); the build records their
sha256 digests in the index state before it marks the index complete, and a reader refuses a file that is
missing or differs from the digest, naming the repair ('recagent index build').
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

from core.errors import IndexStateError

CATALOG, COLLAB, COOCCURRENCE, TRANSITIONS = "catalog.parquet", "collab.npz", "cooccurrence.npz", "transitions.npz"
COLLAB_FILES = (COLLAB, COOCCURRENCE, TRANSITIONS)  # written together, from one collaborative fit


@dataclass(frozen=True)
class CatalogRow:
    id: str
    title: str
    attributes: dict[str, Any]
    content_hash: str


@dataclass(frozen=True)
class CollabGraph:
    """The collaborative side in build order: popularity, the query-side vectors and the two item-to-item
    graphs (rows and columns are positions in `ids`)."""

    ids: list[str]
    popularity: np.ndarray
    query_vectors: np.ndarray  # float32 (len(ids), r), row k for ids[k]
    cooccurrence: sp.csr_matrix
    transitions: sp.csr_matrix


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a million small objects are made: its passes over them took longer
    than making them (a 1M-item catalog's attributes: 7.4 s parsed one by one with it, 0.6 s in one call
    without it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def local_folder(client: Any, namespace: str) -> Path | None:
    """The namespace's file folder inside an embedded store's directory; None for a Chroma server (the files
    would have to live where the server is, so a server-mode index keeps reading Chroma's metadata)."""
    try:
        settings = client.get_settings()
    except AttributeError:
        return None
    if not settings.is_persistent or not settings.persist_directory:
        return None
    return Path(settings.persist_directory) / "recagent-files" / namespace


def digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _replace(path: Path, write: Callable[[BinaryIO], None]) -> str:
    """Write a file atomically (a temporary file in the same folder, fsynced, then os.replace); its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    found = digest(tmp)
    os.replace(tmp, path)
    return found


def _encoded_ids(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids as UTF-8 bytes and offsets (fixed-width numpy strings would grow with the longest id)."""
    encoded = [i.encode() for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _decoded_ids(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = blob.tobytes()
    bounds = offsets.tolist()
    return [data[a:b].decode() for a, b in itertools.pairwise(bounds)]


def _csr(matrix: sp.csr_matrix) -> sp.csr_matrix:
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.indices = csr.indices.astype(np.int32, copy=False)
    return csr


class IndexFiles:
    """The files of one namespace in `folder`, read only after checking them against the recorded digests."""

    def __init__(self, folder: Path, namespace: str) -> None:
        self.folder = folder
        self.namespace = namespace

    def write_catalog(self, rows: Sequence[CatalogRow]) -> dict[str, str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"id": [r.id for r in rows], "title": [r.title for r in rows],
                          "attributes": [json.dumps(r.attributes, ensure_ascii=False) for r in rows],
                          "content_hash": [r.content_hash for r in rows]},
                         schema=pa.schema([("id", pa.string()), ("title", pa.string()), ("attributes", pa.string()),
                                           ("content_hash", pa.string())]))
        return {CATALOG: _replace(self.folder / CATALOG, lambda handle: pq.write_table(table, handle))}

    def write_collab(self, graph: CollabGraph) -> dict[str, str]:
        ids, offsets = _encoded_ids(graph.ids)
        popularity = np.asarray(graph.popularity, dtype=np.float32)
        query = np.asarray(graph.query_vectors, dtype=np.float32)
        return {COLLAB: _replace(self.folder / COLLAB, lambda handle: np.savez(
                    handle, ids=ids, id_offsets=offsets, popularity=popularity, query_vectors=query)),
                COOCCURRENCE: _replace(self.folder / COOCCURRENCE,
                                       lambda handle: sp.save_npz(handle, _csr(graph.cooccurrence), compressed=False)),
                TRANSITIONS: _replace(self.folder / TRANSITIONS,
                                      lambda handle: sp.save_npz(handle, _csr(graph.transitions), compressed=False))}

    def problems(self, recorded: Mapping[str, str], names: Sequence[str]) -> list[str]:
        """What is wrong with the named files against the recorded digests ([] when all match)."""
        out = []
        for name in names:
            path = self.folder / name
            if name not in recorded:
                out.append(f"{name} is not recorded in the index state")
            elif not path.is_file():
                out.append(f"{path} is missing")
            elif digest(path) != recorded[name]:
                out.append(f"{path} differs from the one the build wrote")
        return out

    def _checked(self, recorded: Mapping[str, str], names: Sequence[str]) -> None:
        found = self.problems(recorded, names)
        if found:
            raise IndexStateError(f"index {self.namespace!r}: {'; '.join(found)}; run 'recagent index build' "
                                  f"to repair it (nothing is embedded again)")

    def read_catalog(self, recorded: Mapping[str, str]) -> list[CatalogRow]:
        self._checked(recorded, [CATALOG])
        return self.load_catalog()

    def read_collab(self, recorded: Mapping[str, str]) -> CollabGraph:
        self._checked(recorded, COLLAB_FILES)
        return self.load_collab()

    def load_catalog(self) -> list[CatalogRow]:
        """The catalog file without the digest check (read_catalog checks first)."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.folder / CATALOG)
        ids, titles, attributes, hashes = (table.column(name).to_pylist()
                                           for name in ("id", "title", "attributes", "content_hash"))
        with paused_gc():
            parsed = json.loads(f"[{','.join(attributes)}]")  # one parse: a tenth of the time of one per item
            return [CatalogRow(*row) for row in zip(ids, titles, parsed, hashes, strict=True)]

    def load_collab(self) -> CollabGraph:
        """The graph files without the digest check (read_collab checks first)."""
        with np.load(self.folder / COLLAB, allow_pickle=False) as arrays:
            ids = _decoded_ids(arrays["ids"], arrays["id_offsets"])
            popularity, query = arrays["popularity"], arrays["query_vectors"]
        return CollabGraph(ids, popularity, query, sp.load_npz(self.folder / COOCCURRENCE).tocsr(),
                           sp.load_npz(self.folder / TRANSITIONS).tocsr())
