"""Run folders and reports.

Every evaluation run writes one folder under runs/: `result.json` (the figures, the data hash, the git
commit), `settings.json`, `prompts.json` (the exact prompt texts used), `rows.jsonl` (raw per-user or
per-turn results), `units.jsonl` (per-unit metric values the plots are drawn from), `summary.md` and
`report.html`, one self-contained page (plotly's JS inlined, so it opens offline) with every plot in
eval.plots. `compare_runs` lays several runs side by side and refuses runs made under different
protocols, data or splits.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from eval.plots import (
    entries,
    latency_histogram,
    metric_bars,
    metric_names,
    paired_forest,
    position_bias_plot,
    recall_curves,
)

Row = dict[str, Any]
HEADLINE = ("recall@1", "recall@5", "recall@10", "recall@20", "ndcg@10")


def _headline(units: Sequence[Row]) -> list[str]:
    names = metric_names(units)
    chosen = [m for m in HEADLINE if m in names]
    return chosen or names[:6]


def render_html(title: str, units: Sequence[Row], header: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The self-contained report page and the comparisons computed for it (paired differences, bias)."""
    metrics = _headline(units)
    forest, differences = paired_forest(units, metrics)
    bias, bias_summary = position_bias_plot(units)
    figures = {"metric-bars": metric_bars(units, metrics), "recall-curves": recall_curves(units),
               "paired-forest": forest, "position-bias": bias, "latency-histogram": latency_histogram(units)}
    parts = []
    for number, (div_id, figure) in enumerate(figures.items()):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=number == 0, div_id=div_id))
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in header.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><table>{facts}</table>{''.join(parts)}</body></html>")
    return page, {"paired_differences": differences, "position_bias": bias_summary}


def summary_markdown(title: str, units: Sequence[Row], header: dict[str, Any], comparisons: dict[str, Any]) -> str:
    from eval.plots import values

    metrics = _headline(units)
    lines = [f"# {title}", ""] + [f"- {k}: {v}" for k, v in header.items()] + ["", "| entry | units | " +
                                                                               " | ".join(metrics) + " |",
                                                                               "|---|---:|" + "---:|" * len(metrics)]
    for entry in entries(units):
        cells = []
        for metric in metrics:
            v = list(values(units, entry, metric).values())
            cells.append(f"{sum(v) / len(v):.4f}" if v else "")
        n = len({r['unit'] for r in units if r['entry'] == entry})
        lines.append(f"| {entry} | {n} | " + " | ".join(cells) + " |")
    if comparisons["paired_differences"]:
        lines += ["", "Paired differences to the first entry (95% bootstrap interval, p-value):", ""]
        lines += [f"- {d['entry']} − {d['baseline']}, {d['metric']}: {d['mean']:+.4f} "
                  f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], p = {d['p_value']:.4f}"
                  for d in comparisons["paired_differences"]]
    for entry, bias in comparisons["position_bias"].items():
        lines.append(f"- position bias of {entry}: slope {bias['slope']} over {bias['lists']} lists")
    return "\n".join(lines) + "\n"


def _jsonl(path: Path, rows: Sequence[Row]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_run(result: dict[str, Any], rows: Sequence[Row], units: Sequence[Row], runs_dir: Path,
              prompts: dict[str, str] | None = None, name: str | None = None) -> Path:
    """Write the run's folder; returns it. `result` gets `saved_to` and the report's comparisons."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    label = name or f"{result['dataset']}_{result['protocol']}_{result.get('ranker', 'variants')}_{result['split']}"
    folder = runs_dir / f"{stamp}_{Path(label).name}"
    folder.mkdir(parents=True, exist_ok=False)
    keys = ("dataset", "protocol", "split", "ranker", "users", "turns", "targets", "data_hash", "git_commit", "seconds")
    header: dict[str, Any] = {k: result[k] for k in keys if k in result}
    title = f"recagent eval: {label}"
    page, comparisons = render_html(title, units, header)
    result.update(comparisons)
    result["saved_to"] = str(folder)
    (folder / "report.html").write_text(page, encoding="utf-8")
    (folder / "summary.md").write_text(summary_markdown(title, units, header, comparisons), encoding="utf-8")
    (folder / "settings.json").write_text(json.dumps(result.get("settings", {}), indent=2) + "\n", encoding="utf-8")
    (folder / "prompts.json").write_text(json.dumps(prompts or {}, indent=2) + "\n", encoding="utf-8")
    _jsonl(folder / "rows.jsonl", rows)
    _jsonl(folder / "units.jsonl", units)
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return folder


def read_run(folder: Path) -> tuple[dict[str, Any], list[Row]]:
    result_path = folder / "result.json"
    if not result_path.exists():
        raise InvalidRequest(f"{folder}: not a run folder (no result.json)")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    units_path = folder / "units.jsonl"
    units = [json.loads(line) for line in units_path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if units_path.exists() else []
    return result, units


COMPARABLE = ("protocol", "data_hash", "split")


def compare_runs(folders: Sequence[Path], runs_dir: Path) -> Path:
    """One report over several runs, side by side; runs under another protocol, data or split are refused."""
    if not folders:
        raise InvalidRequest("name at least one run folder")
    loaded = [(folder, *read_run(folder)) for folder in folders]
    first = loaded[0][1]
    for folder, result, _ in loaded[1:]:
        for key in COMPARABLE:
            if result.get(key) != first.get(key):
                raise InvalidRequest(f"cannot compare {folder} with {loaded[0][0]}: {key} differs "
                                     f"({result.get(key)!r} vs {first.get(key)!r})")
    units: list[Row] = []
    for folder, _, run_units in loaded:
        units += [{**u, "entry": f"{folder.name[:24]}:{u['entry']}"} for u in run_units]
    result = {"dataset": first.get("dataset"), "protocol": first.get("protocol"), "split": first.get("split"),
              "ranker": "comparison", "data_hash": first.get("data_hash"), "runs": [str(f) for f, _, _ in loaded],
              "settings": {}}
    return write_run(result, [], units, runs_dir, name=f"{first.get('dataset')}_{first.get('protocol')}_comparison")
