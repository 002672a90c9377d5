"""The scale benchmark end to end on a small synthetic catalog, each step a process of its own as a user runs
it: a build in its own process, the sizes it reports against the data it built, the time to open the index
from its files and from Chroma's metadata (the same view both ways), the query side, approximate-search
recall, the saved table and plot, and a build stopped midway that goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

STOP_MIDWAY = """
import sys
from pathlib import Path
from index.config import IndexConfig
from index.store import IndexStore, chroma_client
store = IndexStore(chroma_client(IndexConfig(path=Path(sys.argv[1]))), "synth-1000")
store.set_state(state="building")  # as a build killed while embedding leaves it: 250 items without a vector
store.delete_items(sorted(store.item_hashes())[:250])
print(store.client.get_collection("synth-1000-collab").configuration_json["hnsw"]["max_neighbors"])
"""


def _bench(workdir: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "app.cli", "bench", "scale", "--sizes", "1000", "--fit-only", "",
                           "--repeats", "5", "--workdir", str(workdir), "--quiet", *extra],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow  # two builds of a 1,000-item catalog, each in a process of its own: about 100 CPU seconds
def test_scale_bench_measures_and_resumes_a_stopped_build(tmp_path: Path) -> None:
    config = tmp_path / "recagent.toml"  # reaches the build's own process too, not only the query side
    config.write_text("[index.hnsw]\nmax_neighbors = 24\nef_search = 300\n")
    first = _bench(tmp_path, "--config", str(config))
    row = first["sizes"][0]
    data = tmp_path / "data" / "synth-1000"  # what the bench generated and built: the row reports its sizes
    interactions = pq.read_table(data / "interactions.parquet")
    assert row["items"] == row["indexed_items"] == pq.read_metadata(data / "catalog.parquet").num_rows == 1000
    assert row["interactions"] == interactions.num_rows >= 9000
    assert row["users"] == len(set(interactions.column("user_id").to_pylist())) == 1000
    assert row["embedding_phase_s"] > 0 and row["collab_phase_s"] > 0 and row["build_s"] >= row["embedding_phase_s"]
    assert 0.1 < row["build_peak_rss_gb"] < 8 and row["index_disk_gb"] > 0
    # opened from the files the build wrote, the same catalog and graphs as Chroma's metadata gives
    assert row["graph_files"] == "written" and row["opened_from_files"] and row["files_match_metadata"] is True
    assert row["open_index_s"] > 0 and row["open_index_from_metadata_s"] > 0
    assert set(row["open_parts_s"]) == {"digests_s", "catalog_s", "graphs_s"}
    assert row["fused_top50"]["p95_ms"] >= row["fused_top50"]["p50_ms"] > 0
    assert row["fused_top50"]["fewest_returned"] == 50  # every sampled user got a full top-50
    assert row["ef_search"] == [300]  # every collection searched with the file's setting
    for space in ("text", "collab", "users"):
        assert row["ann"][space]["recall_at_50"] >= 0.98, (space, row["ann"][space])  # the goal at every size
    assert "build_resumed" not in row and first["bare_encoder_texts_per_s"] > 0
    assert json.loads((tmp_path / "scale.json").read_text()) == first["sizes"]
    assert (tmp_path / "scale.html").stat().st_size > 1000

    stop = subprocess.run([sys.executable, "-c", STOP_MIDWAY, str(tmp_path / "chroma-1000")],
                          capture_output=True, text=True, timeout=300)
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert stop.stdout.strip().splitlines()[-1] == "24"  # the HNSW graph was built with the file's setting
    again = _bench(tmp_path, "--resume-builds", "--config", str(config))["sizes"][0]
    assert again["build_resumed"] and again["embedded_in_last_part"] == 250
    assert again["graph_files"] == "written" and again["files_match_metadata"] is True
    assert again["ann"]["text"]["vectors"] == 1000
