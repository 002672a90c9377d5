"""Index builds against real Chroma (embedded and server) with the real embedder."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from agent.assemble import build_agent
from agent.catalog import LoadedIndex
from conftest import make_settings
from core.errors import IndexStateError
from index.build import build_index
from index.config import EmbedderConfig, IndexConfig
from index.embedder import Embedder
from index.loaders import load_dataset
from index.store import IndexStore, chroma_client


def _copy(small_data_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(small_data_dir / "movies-small", root / "movies-small")
    return root


def _edit_movies(folder: Path, rename: dict[str, str], drop: set[str]) -> None:
    path = folder / "movies.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["movieId", "title", "genres"])
        writer.writeheader()
        for row in rows:
            if row["movieId"] in drop:
                continue
            row["title"] = rename.get(row["movieId"], row["title"])
            writer.writerow(row)


def test_rebuild_embeds_only_changes(small_data_dir: Path, tmp_path: Path, embedder: Embedder) -> None:
    root = _copy(small_data_dir, tmp_path)
    config = IndexConfig(path=tmp_path / "chroma")
    store = IndexStore(chroma_client(config), "movies-small")
    first = build_index(load_dataset("movies-small", root), store, config, lambda: embedder, progress=False)
    assert first.embedded == 300 and first.collab_rebuilt
    again = build_index(load_dataset("movies-small", root), store, config, lambda: embedder, progress=False)
    assert (again.embedded, again.unchanged, again.deleted, again.collab_rebuilt) == (0, 300, 0, False)

    # a search setting changed: no vector is written again, every collection gets it
    wider = config.model_copy(update={"hnsw": config.hnsw.model_copy(update={"ef_search": 300})})
    client = chroma_client(wider)
    searched = build_index(load_dataset("movies-small", root), IndexStore(client, "movies-small", wider.hnsw), wider,
                           lambda: embedder, progress=False)
    assert (searched.embedded, searched.collab_rebuilt) == (0, False)
    assert {c.name: c.configuration_json["hnsw"]["ef_search"] for c in client.list_collections()} == {
        f"movies-small-{part}": 300 for part in ("items", "collab", "collabq", "users")}

    _edit_movies(root / "movies-small", rename={"1": "Toy Story, remastered (1995)"}, drop={"2"})
    changed = build_index(load_dataset("movies-small", root), store, config, lambda: embedder, progress=False)
    assert (changed.embedded, changed.unchanged, changed.deleted) == (1, 298, 1)
    index = LoadedIndex(store)
    assert index.entries["1"].title == "Toy Story, remastered (1995)"
    assert "2" not in index.entries and len(index.entries) == 299
    assert index.timed and index.latest_time > 10**8  # MovieLens times are Unix seconds

    # a dataset whose timestamps are only an order (file order) says so in the index it builds
    ordered = replace(load_dataset("movies-small", root), timed=False)
    build_index(ordered, store, config, lambda: embedder, progress=False)
    assert not LoadedIndex(store).timed


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from index.build import build_index
    from index.config import IndexConfig
    from index.embedder import Embedder
    from index.loaders import load_dataset
    from index.store import IndexStore, chroma_client

    data_dir, chroma_path = Path(sys.argv[1]), Path(sys.argv[2])
    calls = []
    original = Embedder.encode
    def encode(self, texts, progress=False):
        calls.append(len(texts))
        if len(calls) == 2:  # the second batch: part of the items are already written
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, texts, progress)
    Embedder.encode = encode
    config = IndexConfig(path=chroma_path)
    build_index(load_dataset("movies-small", data_dir), IndexStore(chroma_client(config), "movies-small"),
                config, lambda: Embedder(config.embedder), progress=False)
""")


def test_build_killed_midway_is_detected_and_repaired(small_data_dir: Path, tmp_path: Path,
                                                      embedder: Embedder) -> None:
    chroma_path = tmp_path / "chroma"
    process = subprocess.run([sys.executable, "-c", CRASH, str(small_data_dir), str(chroma_path)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -9, process.stderr[-2000:]
    config = IndexConfig(path=chroma_path)
    store = IndexStore(chroma_client(config), "movies-small")
    assert store.state()["state"] == "building"
    with pytest.raises(IndexStateError, match="unfinished"):
        LoadedIndex(store)  # never silently partial
    report = build_index(load_dataset("movies-small", small_data_dir), store, config, lambda: embedder,
                         progress=False)
    assert report.repaired
    assert report.embedded == 300 - 256 and report.unchanged == 256
    index = LoadedIndex(store)
    assert len(index.entries) == 300 and len(index.ids) == 300


@pytest.mark.server
def test_server_mode_build_and_query(chroma_server: IndexConfig, small_data_dir: Path, tmp_path: Path,
                                     embedder: Embedder) -> None:
    settings = make_settings(small_data_dir, tmp_path / "unused", **{
        "index.chroma": "server", "index.host": chroma_server.host, "index.port": chroma_server.port})
    store = IndexStore(chroma_client(settings.index), "movies-small")
    report = build_index(load_dataset("movies-small", small_data_dir), store, settings.index, lambda: embedder,
                         progress=False)
    assert report.embedded == 300
    assert not (tmp_path / "unused").exists()  # nothing written locally in server mode
    recommender = build_agent(settings, index=LoadedIndex(store), llm=None, embedder=embedder).recommender
    history = ["1", "260", "1196"]  # Toy Story, Star Wars IV and V
    found = recommender.candidates(history=history, k=10)
    assert len(found) == 10 and not set(history) & {c.id for c in found}
    again = build_index(load_dataset("movies-small", small_data_dir), store, settings.index, lambda: embedder,
                        progress=False)
    assert again.embedded == 0


def test_server_down_gives_clear_error() -> None:
    from conftest import free_port

    port = free_port()
    with pytest.raises(IndexStateError, match=f"cannot reach the Chroma server at 127.0.0.1:{port}"):
        chroma_client(IndexConfig(chroma="server", host="127.0.0.1", port=port))


def test_bfloat16_encoding_matches_float32() -> None:
    """The precision setting changes speed, not the vectors: bfloat16 autocast stays within 1e-3 in cosine of
    float32 (the content hashes ignore it), and every vector is unit length either way."""
    texts = ["Toy Story (1995). genres: Adventure, Animation, Children", "A sturdy steel kettle from Velora",
             "Heat (1995). genres: Action, Crime, Thriller"]
    exact = Embedder(EmbedderConfig(precision="float32"))
    fast = Embedder(EmbedderConfig(precision="bfloat16"))
    assert not exact.bfloat16 and fast.bfloat16
    a, b = exact.encode(texts), fast.encode(texts)
    assert a.dtype == b.dtype == "float32"
    assert abs(a - b).max() > 0  # the autocast really ran
    assert (a * b).sum(axis=1).min() > 0.999
    assert abs(((a * a).sum(axis=1)) - 1).max() < 1e-4 and abs(((b * b).sum(axis=1)) - 1).max() < 1e-4
    assert (a @ a.T).argsort(axis=1).tolist() == (b @ b.T).argsort(axis=1).tolist()


def test_nearest_asks_for_more_than_the_collection_holds(tmp_path: Path) -> None:
    # the store does not count the collection before a query (a row scan at scale): Chroma must give what it has
    import numpy as np

    store = IndexStore(chroma_client(IndexConfig(path=tmp_path / "chroma")), "tiny")
    store.add_users(["u1", "u2", "u3"], np.eye(3, dtype=np.float32), [[("i1", 1)], [("i2", 2)], [("i3", 3)]])
    hits = store.nearest("users", np.asarray([[1.0, 0.2, 0.0]], dtype=np.float32), 10)[0]
    assert [h.id for h in hits][:2] == ["u1", "u2"] and len(hits) == 3
    assert store.nearest("users", np.ones((1, 3), dtype=np.float32), 10, ids=[])[0] == []
