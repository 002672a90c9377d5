"""The open benchmark on a small synthetic index: the files it writes are the build's, and LoadedIndex opens them."""

from __future__ import annotations

from pathlib import Path

from bench.open_bench import bench_open


def test_open_bench_writes_an_index_that_opens(tmp_path: Path) -> None:
    row = bench_open(2000, tmp_path / "open", cooccurrence=20, transitions=5, dims=16)
    assert row["items"] == 2000 and set(row["files_mb"]) == {"catalog.parquet", "collab.npz", "cooccurrence.npz",
                                                             "transitions.npz"}
    assert 0.95 * 2000 * 20 <= row["cooccurrence_nnz"] <= 2000 * 20  # random repeats in a row are summed
    assert 0.95 * 2000 * 5 <= row["transitions_nnz"] <= 2000 * 5
    assert row["open_index_s"] >= 0 and set(row["parts_s"]) == {"digests_s", "catalog_s", "graphs_s"}
