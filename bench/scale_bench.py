"""recagent at 10k, 100k and 1M items (synthetic catalogs, interactions = 10 x items, users = items / 10):
build time by phase, the build's peak memory (RSS of the `recagent index build` process), index size on
disk, the time to open the index (the agent's in-memory view: from the files beside the index, and from
Chroma's metadata as before them, with a check that both give the same catalog and graphs), fused retrieval
p50/p95 against exact search, the approximate top-50's recall of the exact top-50
in every vector space (text and user vectors probed with perturbed stored vectors; the collaborative item
vectors with the queries the collaborative generator sends, users' history vectors, and as a stress test
with perturbed item vectors too), and ranking time per user for the loo cases. Writes JSON and a log-log plot.

The embedding phase is reported apart: its limit is the bare encoder's speed on the same texts, which the
bench measures in the same run (about 150 texts/s in float32 on 2 cores here, 250 with bfloat16 autocast).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.assemble import build_agent, load_index, open_store
from agent.catalog import LoadedIndex
from agent.settings import Settings, load_settings
from index.config import IndexConfig
from index.embedder import Embedder, use_bfloat16
from index.loaders import load_dataset
from index.synth import synthesize
from index.text import item_text

TOP = 50


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _measured(command: list[str], what: str, index: IndexConfig | None = None) -> tuple[dict[str, Any], float, int]:
    """Run `command` in a process of its own: the JSON of its last output line, wall seconds, peak RSS (bytes).
    With `index`, the process gets those index settings (the bench's --config file, environment and all) in
    RECAGENT_INDEX. Its output goes to files, not pipes: a child that writes more than a pipe holds while
    nobody reads would wait forever."""
    env = dict(os.environ)
    if index is not None:
        env["RECAGENT_INDEX"] = index.model_dump_json()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{what} failed: {err.read()[-2000:]}")
        return json.loads(out.read().strip().splitlines()[-1]), wall, usage.ru_maxrss * 1024


def _synthetic(root: Path, items: int) -> tuple[Path, str]:
    """The synthetic dataset of this size under root/data (written the first time): (data folder, name)."""
    name, data_dir = f"synth-{items}", root / "data"
    if not (data_dir / name / "dataset.toml").exists():
        synthesize(data_dir / name, items, _users(items), 10 * items, seed=0)
    return data_dir, name


def _users(items: int) -> int:
    return max(1000, items // 10)


_FIT = """
import json, sys, time
from pathlib import Path
from index.collab import fit_collab, user_histories
from index.config import IndexConfig
from index.loaders import load_dataset
started = time.perf_counter()
dataset = load_dataset(sys.argv[2], Path(sys.argv[1]))
loaded = time.perf_counter()
item_ids = list(dataset.items)
config = IndexConfig.model_validate_json(sys.argv[3])
model = fit_collab(user_histories(dataset.interactions, item_ids), item_ids, config)
print(json.dumps({"load_s": loaded - started, "fit_s": time.perf_counter() - loaded,
                  "item_vectors": list(model.item_vectors.shape), "cooccurrence_nnz": int(model.cooccurrence.nnz)}))
"""


def _fit_only(items: int, root: Path, settings: Settings) -> dict[str, Any]:
    """Only the collaborative fit (the build's memory-heavy phase: factorisation, co-occurrence and transition
    graphs) in a process of its own, for sizes whose full build (embedding) takes too long on this machine."""
    data_dir, name = _synthetic(root, items)
    report, wall, peak = _measured([sys.executable, "-c", _FIT, str(data_dir), name,
                                    settings.index.model_dump_json()], f"the collaborative fit for {name}")
    return {"items": items, "users": _users(items), "interactions": 10 * items, "wall_s": round(wall, 1),
            "load_s": round(report["load_s"], 1), "collab_fit_s": round(report["fit_s"], 1),
            "peak_rss_gb": round(peak / 2**30, 2), "item_vectors": report["item_vectors"],
            "cooccurrence_nnz": report["cooccurrence_nnz"]}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _ann_recall(agent: Any, space: Any, queries: int, rng: np.random.Generator,
                probes: np.ndarray | None = None) -> dict[str, Any]:
    """Chroma's top-50 against the exact top-50 (numpy over every vector), for `probes` or else for perturbed
    stored vectors."""
    ids, matrix = agent.index.store.vectors(space)
    cosine = space != "collab"
    norms = np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-12) if cosine else 1.0
    normed = matrix / norms
    if probes is None:
        picks = matrix[rng.integers(0, len(matrix), queries)]
        picks = picks + rng.normal(0, 0.01, picks.shape).astype(np.float32)
    else:
        picks = probes[rng.choice(len(probes), min(queries, len(probes)), replace=False)]
    recalls, chroma_t, exact_t = [], [], []
    id_array = np.asarray(ids)
    for q in picks:
        t0 = time.perf_counter()
        got = [hit.id for hit in agent.index.store.nearest(space, q[None, :], TOP)[0]]
        chroma_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = normed @ (q / np.linalg.norm(q) if cosine else q)
        top = np.argpartition(-scores, TOP)[:TOP]
        exact_t.append(time.perf_counter() - t0)
        recalls.append(len(set(got) & set(id_array[top].tolist())) / TOP)
    return {"vectors": len(ids), "recall_at_50": round(float(np.mean(recalls)), 4),
            "chroma": _percentiles(chroma_t), "exact_numpy": _percentiles(exact_t)}


def _same_view(a: LoadedIndex, b: LoadedIndex) -> bool:
    """Whether two opened views hold the same catalog, popularity, query vectors and graphs."""
    return (a.ids == b.ids and a.entries == b.entries and np.array_equal(a.popularity, b.popularity)
            and np.array_equal(a.query_vectors, b.query_vectors) and a.cooccurrence.shape == b.cooccurrence.shape
            and (a.cooccurrence != b.cooccurrence).nnz == 0 and a.transitions.shape == b.transitions.shape
            and (a.transitions != b.transitions).nnz == 0)


def _open_times(settings: Settings, namespace: str) -> dict[str, Any]:
    """Seconds to open the index (LoadedIndex) from its files, their parts, and from Chroma's metadata as before
    the files existed; and whether both views hold the same catalog and graphs."""
    store = open_store(settings, namespace)
    recorded = store.recorded_files()
    out: dict[str, Any] = {"opened_from_files": recorded is not None}
    started = time.perf_counter()
    index = load_index(store)
    out["open_index_s"] = round(time.perf_counter() - started, 2)
    if recorded is not None and store.files is not None:
        parts = {}
        started = time.perf_counter()
        store.files.problems(recorded, sorted(recorded))
        parts["digests_s"] = time.perf_counter() - started
        started = time.perf_counter()
        store.files.load_catalog()
        parts["catalog_s"] = time.perf_counter() - started
        started = time.perf_counter()
        store.files.load_collab()
        parts["graphs_s"] = time.perf_counter() - started
        out["open_parts_s"] = {k: round(v, 2) for k, v in parts.items()}
    started = time.perf_counter()
    before = load_index(open_store(settings, namespace, use_files=False))
    out["open_index_from_metadata_s"] = round(time.perf_counter() - started, 2)
    out["files_match_metadata"] = _same_view(index, before)
    return out


def _one_size(items: int, root: Path, base: Settings, queries: int,
              previous: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    """One size; with `previous` (its row from an earlier run whose index is still there) the build is not
    repeated: its figures are kept and only the query side is measured again. With `resume` a build stopped
    midway goes on where it stopped (the index build re-embeds only what is missing)."""
    data_dir, name = _synthetic(root, items)
    chroma = root / f"chroma-{items}"
    # the build and the query side both use these: the bench's own settings, on an embedded store in root
    index = base.index.model_copy(update={"chroma": "embedded", "path": chroma})
    if previous is None:
        if not resume:
            shutil.rmtree(chroma, ignore_errors=True)
        report, build_s, peak = _measured(
            [sys.executable, "-m", "app.cli", "index", "build", "--data-dir", str(data_dir), "--dataset", name,
             "--chroma-path", str(chroma), "--quiet"], f"index build for {name}", index)
        built = {"build_s": round(build_s, 1), "embedding_phase_s": round(report["timings"]["items"], 1),
                 "collab_phase_s": round(report["timings"]["collab"], 1),
                 "embedding_items_per_s": round(report["embedded"] / max(report["timings"]["items"], 1e-9), 1),
                 "build_peak_rss_gb": round(peak / 2**30, 2), "index_disk_gb": round(_du(chroma) / 2**30, 3),
                 "embedder_precision": "bfloat16" if use_bfloat16(index.embedder) else "float32",
                 "graph_files": report.get("graph_files", "none")}
        if report["repaired"]:  # the times are those of the last part: items embedded before are not in them
            built |= {"build_resumed": True, "embedded_in_last_part": report["embedded"]}
    else:
        built = {key: previous[key] for key in ("build_s", "embedding_phase_s", "collab_phase_s",
                                                "embedding_items_per_s", "build_peak_rss_gb", "index_disk_gb")}
        built["embedder_precision"] = previous.get("embedder_precision", "float32")  # rows before the setting
        built["build_reused_from_earlier_run"] = True
    overrides: dict[str, Any] = {"data.data_dir": data_dir, "data.dataset": name, "index": index.model_dump(),
                                 "conversations.url": f"sqlite:///{root / 'conversations.sqlite3'}"}
    settings = load_settings(None, {}, **overrides)
    opened = _open_times(settings, name)  # before the agent: one view at a time
    started = time.perf_counter()
    agent = build_agent(settings, llm=None)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    users = agent.index.store.user_ids()
    sample = [users[i] for i in rng.choice(len(users), min(queries, len(users)), replace=False)]
    histories = [agent.index.user_history(u) for u in sample]
    agent.recommender.candidates(history=histories[0][0][:-2], timestamps=histories[0][1][:-2], k=20)  # warm up
    fused_t, rank_t = [], []
    returned = []
    for items_u, times_u in histories:
        t0 = time.perf_counter()
        returned.append(len(agent.recommender.candidates(history=items_u, timestamps=times_u, k=TOP)))
        fused_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # a loo case: everything but the last two items, ranked top-20
        agent.recommender.candidates(history=items_u[:-2], timestamps=times_u[:-2], k=20)
        rank_t.append(time.perf_counter() - t0)
    searched = {c.name: ((c.configuration_json or {}).get("hnsw") or {}).get("ef_search")
                for c in agent.index.store.client.list_collections()}  # what the queries ran with
    return {"items": items, "indexed_items": len(agent.index.ids), "users": len(users),
            "interactions": sum(len(h.items) for h in agent.index.sequences()), **built, **opened,
            "load_agent_s": round(load_s, 1), "ef_search": sorted(set(searched.values()) - {None}),
            "fused_top50": {**_percentiles(fused_t), "fewest_returned": min(returned)},
            "loo_ranking_ms_per_user": round(1000 * float(np.mean(rank_t)), 2),
            "ann": {"text": _ann_recall(agent, "text", queries, rng),
                    # the collaborative generator's own queries: users' history vectors (inner product)
                    "collab": _ann_recall(agent, "collab", queries, rng, agent.index.store.vectors("users")[1]),
                    "collab_item_probes": _ann_recall(agent, "collab", queries, rng),
                    "users": _ann_recall(agent, "users", queries, rng)},
            "bench_process_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def _series(rows: list[dict[str, Any]], fits: list[dict[str, Any]]) -> list[tuple[str, list[int], list[float], str]]:
    """(label, sizes, values, style) for the plot: lines for full builds, markers for fits alone."""
    sizes = [r["items"] for r in rows]
    out = [(label, sizes, values, "line") for label, values in [
        ("build s", [r["build_s"] for r in rows]),
        ("embedding phase s", [r["embedding_phase_s"] for r in rows]),
        ("collab phase s", [r["collab_phase_s"] for r in rows]),
        ("build peak RSS GB", [r["build_peak_rss_gb"] for r in rows]),
        ("index on disk GB", [r["index_disk_gb"] for r in rows]),
        ("fused p95 ms", [r["fused_top50"]["p95_ms"] for r in rows]),
        ("loo ranking ms/user", [r["loo_ranking_ms_per_user"] for r in rows])] if rows]
    for label, key in (("open index s", "open_index_s"), ("open index from metadata s", "open_index_from_metadata_s")):
        measured = [r for r in rows if key in r]  # rows measured before the files existed have neither
        if measured:
            out.append((label, [r["items"] for r in measured], [r[key] for r in measured], "line"))
    if rows:
        out.append(("linear in items (from the smallest build)", sizes,
                    [rows[0]["build_s"] * s / sizes[0] for s in sizes], "dotted"))
    if fits:
        fit_sizes = [r["items"] for r in fits]
        out.append(("collab fit alone s", fit_sizes, [r["collab_fit_s"] for r in fits], "marker"))
        out.append(("collab fit alone peak RSS GB", fit_sizes, [r["peak_rss_gb"] for r in fits], "marker"))
    return out


def _plot(rows: list[dict[str, Any]], fits: list[dict[str, Any]], path: Path) -> None:
    """A log-log plot as self-contained HTML (plotly) and, when matplotlib is installed, as PNG beside it."""
    import plotly.graph_objects as go

    title = "recagent at scale (2 cores, 24 GB)"
    series = _series(rows, fits)
    figure = go.Figure()
    for label, x, y, style in series:
        mode = {"line": "lines+markers", "dotted": "lines", "marker": "markers"}[style]
        figure.add_trace(go.Scatter(x=x, y=y, mode=mode, name=label,
                                    line={"dash": "dot", "color": "grey"} if style == "dotted" else None))
    figure.update_layout(title=title, xaxis={"type": "log", "title": "items"}, yaxis={"type": "log", "title": "cost"})
    figure.write_html(path, include_plotlyjs=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG plot (pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, x, y, style in series:
        fmt = {"line": "-o", "dotted": ":", "marker": "D"}[style]
        ax.plot(x, y, fmt, label=label, color="grey" if style == "dotted" else None)
    ax.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds / GB / ms (see legend)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)


def _sizes(text: str | None) -> list[int]:
    return [int(x) for x in (text or "").split(",") if x]


def _table(path: Path, sizes: list[int], measure: Callable[[int, dict[str, Any] | None], dict[str, Any]]
           ) -> list[dict[str, Any]]:
    """The rows saved in `path` with `sizes` measured again (`measure` gets each size's earlier row, if any);
    saved after every size, so a long run keeps what it has and earlier sizes stay in the table and plot."""
    earlier = {r["items"]: r for r in (json.loads(path.read_text()) if path.exists() else [])}
    rows = [r for n, r in earlier.items() if n not in sizes]
    for items in sizes:
        row = measure(items, earlier.get(items))
        rows = sorted([*rows, row], key=lambda r: r["items"])
        path.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def bench_scale(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    encoder = Embedder(settings.index.embedder)
    # the bare encoder on the catalogs' own texts (every size comes from the same generator)
    data_dir, name = _synthetic(root, min([*_sizes(args.sizes), 10_000]))
    texts = [item_text(item) for item in list(load_dataset(name, data_dir).items.values())[:1024]]
    encoder.encode(texts[:64])
    started = time.perf_counter()
    encoder.encode(texts)
    bare = len(texts) / (time.perf_counter() - started)

    def one_size(items: int, earlier: dict[str, Any] | None) -> dict[str, Any]:
        kept = earlier if args.reuse_builds and earlier is not None and (root / f"chroma-{items}").exists() else None
        return _one_size(items, root, settings, args.repeats, kept, args.resume_builds)

    rows = _table(root / "scale.json", _sizes(args.sizes), one_size)
    fits = _table(root / "fit_only.json", _sizes(args.fit_only), lambda items, _: _fit_only(items, root, settings))
    _plot(rows, fits, root / "scale.html")
    return {"benchmark": "scale", "bare_encoder_texts_per_s": round(bare, 1),
            "embedder_precision": "bfloat16" if encoder.bfloat16 else "float32", "sizes": rows, "fit_only": fits,
            "plot": str(root / "scale.html"), "machine": f"{os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB"}
