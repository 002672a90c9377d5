"""The files opening an index reads (index.files), against real Chroma and the real embedder: the same view as
Chroma's metadata gives, refused when missing or changed, repaired by the next build without embedding, written
for an index built before them, and crash-safe when a build is killed while writing them."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.catalog import LoadedIndex
from core.errors import IndexStateError
from index.build import BuildReport, build_index
from index.config import IndexConfig
from index.embedder import Embedder
from index.files import CATALOG, COOCCURRENCE, TRANSITIONS
from index.loaders import load_dataset
from index.store import IndexStore, chroma_client


def metadata_only(store: IndexStore) -> IndexStore:
    """The store read as before the files existed (and as a Chroma server's index is read)."""
    return IndexStore(store.client, store.namespace, store.hnsw, use_files=False)


def _build(root: Path, store: IndexStore, config: IndexConfig, embedder: Embedder) -> BuildReport:
    return build_index(load_dataset("movies-small", root), store, config, lambda: embedder, progress=False)


def _assert_same_view(a: LoadedIndex, b: LoadedIndex) -> None:
    assert a.ids == b.ids and len(a.ids) == 300
    assert a.entries == b.entries and a.entries["1"].title == "Toy Story (1995)"
    assert np.array_equal(a.popularity, b.popularity) and a.popularity.sum() > 0
    assert np.array_equal(a.query_vectors, b.query_vectors) and a.query_vectors.shape == (300, 256)
    for mine, theirs in ((a.cooccurrence, b.cooccurrence), (a.transitions, b.transitions)):
        assert mine.shape == theirs.shape == (300, 300) and mine.nnz > 0 and (mine != theirs).nnz == 0


@pytest.fixture
def built(small_data_dir: Path, tmp_path: Path, embedder: Embedder) -> tuple[Path, IndexStore, IndexConfig]:
    root = tmp_path / "data"
    shutil.copytree(small_data_dir / "movies-small", root / "movies-small")
    config = IndexConfig(path=tmp_path / "chroma")
    store = IndexStore(chroma_client(config), "movies-small")
    report = _build(root, store, config, embedder)
    assert report.graph_files == "written" and report.embedded == 300
    return root, store, config


def test_the_files_give_the_view_chroma_metadata_gives(built: tuple[Path, IndexStore, IndexConfig],
                                                       embedder: Embedder) -> None:
    root, store, config = built
    folder = config.path / "recagent-files" / "movies-small"
    assert store.files is not None and store.files.folder == folder
    recorded = store.recorded_files()
    assert recorded is not None and sorted(recorded) == sorted(p.name for p in folder.iterdir())
    assert not list(folder.glob(".*.tmp"))
    _assert_same_view(LoadedIndex(store), LoadedIndex(metadata_only(store)))
    again = _build(root, store, config, embedder)
    assert (again.embedded, again.collab_rebuilt, again.graph_files) == (0, False, "kept")
    assert store.recorded_files() == recorded  # the same bytes: the catalog is written again, identically


@pytest.mark.parametrize("name", [COOCCURRENCE, CATALOG])
def test_a_missing_or_changed_file_is_refused_and_the_next_build_repairs_it(
        built: tuple[Path, IndexStore, IndexConfig], embedder: Embedder, name: str) -> None:
    root, store, config = built
    assert store.files is not None
    expected = LoadedIndex(store)
    path = store.files.folder / name
    original = path.read_bytes()
    path.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])  # one bit flipped
    with pytest.raises(IndexStateError, match=rf"{name} differs .*run 'recagent index build'"):
        LoadedIndex(store)
    path.unlink()
    with pytest.raises(IndexStateError, match=rf"{name} is missing.*run 'recagent index build'"):
        LoadedIndex(store)
    report = _build(root, store, config, embedder)
    assert (report.embedded, report.collab_rebuilt, report.repaired) == (0, False, False)
    assert report.graph_files == ("repaired" if name == COOCCURRENCE else "kept")
    assert path.read_bytes() == original
    _assert_same_view(LoadedIndex(store), expected)


def test_an_index_built_before_the_files_opens_and_the_next_build_writes_them(
        built: tuple[Path, IndexStore, IndexConfig], embedder: Embedder, caplog: pytest.LogCaptureFixture) -> None:
    root, store, config = built
    assert store.files is not None
    expected = LoadedIndex(store)
    store.set_state(files="")  # what a build before the files left: no record, no folder
    shutil.rmtree(store.files.folder)
    with caplog.at_level(logging.WARNING, logger="recagent.index"):
        legacy = LoadedIndex(store)
    assert "built before its graph files" in caplog.text and "recagent index build" in caplog.text
    _assert_same_view(legacy, expected)
    report = _build(root, store, config, embedder)
    assert (report.embedded, report.unchanged, report.collab_rebuilt, report.graph_files) == (0, 300, False,
                                                                                               "repaired")
    assert store.recorded_files() is not None
    _assert_same_view(LoadedIndex(store), expected)


KILLED_WHILE_WRITING_FILES = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import index.files
    from index.build import build_index
    from index.config import IndexConfig
    from index.embedder import Embedder
    from index.loaders import load_dataset
    from index.store import IndexStore, chroma_client

    data_dir, chroma_path = Path(sys.argv[1]), Path(sys.argv[2])
    replace = os.replace
    def killing_replace(src, dst):
        if Path(dst).name == "transitions.npz":  # the catalog and two graph files are in place, one is not
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst)
    index.files.os.replace = killing_replace
    config = IndexConfig(path=chroma_path)
    build_index(load_dataset("movies-small", data_dir), IndexStore(chroma_client(config), "movies-small"),
                config, lambda: Embedder(config.embedder), progress=False)
""")


def test_a_build_killed_while_writing_the_files_is_refused_and_repaired(
        built: tuple[Path, IndexStore, IndexConfig], embedder: Embedder) -> None:
    root, store, config = built
    assert store.files is not None
    before = LoadedIndex(store)
    ratings = root / "movies-small" / "ratings.csv"  # new interactions: the graphs are fitted and written again
    with ratings.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with ratings.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["userId"]) % 3)
    old_transitions = (store.files.folder / TRANSITIONS).read_bytes()
    process = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING_FILES, str(root), str(config.path)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -9, process.stderr[-2000:]
    assert (store.files.folder / TRANSITIONS).read_bytes() == old_transitions  # the old one, a new one beside it
    assert (store.files.folder / f".{TRANSITIONS}.tmp").exists()
    with pytest.raises(IndexStateError, match="unfinished"):
        LoadedIndex(store)  # new catalog and co-occurrence beside old transitions: never opened
    report = _build(root, store, config, embedder)
    assert report.repaired and report.collab_rebuilt and report.embedded == 0 and report.graph_files == "written"
    assert not list(store.files.folder.glob(".*.tmp"))
    after = LoadedIndex(store)
    _assert_same_view(after, LoadedIndex(metadata_only(store)))
    assert (after.transitions != before.transitions).nnz > 0 and not np.array_equal(after.popularity,
                                                                                    before.popularity)
