"""The report's plots (plotly), each a function of per-unit rows: one row per scored unit (a user, a
target in a dialogue turn, a reply request) and entry (a ranker or variant), with its metric values."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.stats import bootstrap_interval, paired_bootstrap, position_bias

Row = dict[str, Any]
PLOTS = ("metric-bars", "recall-curves", "paired-forest", "position-bias", "latency-histogram")


def entries(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["entry"] for r in rows))


def metric_names(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(m for r in rows for m in r.get("metrics", {})))


def values(rows: Sequence[Row], entry: str, metric: str) -> dict[str, float]:
    return {r["unit"]: float(r["metrics"][metric]) for r in rows if r["entry"] == entry and metric in r["metrics"]}


def _figure() -> Any:
    import plotly.graph_objects as go

    return go.Figure()


def metric_bars(rows: Sequence[Row], metrics: Sequence[str]) -> Any:
    import plotly.graph_objects as go

    fig = _figure()
    for entry in entries(rows):
        means, low, high = [], [], []
        for metric in metrics:
            v = np.array(list(values(rows, entry, metric).values()))
            lo, hi = bootstrap_interval(v, 500) if len(v) else (0.0, 0.0)
            means.append(float(v.mean()) if len(v) else 0.0)
            low.append(means[-1] - lo)
            high.append(hi - means[-1])
        fig.add_trace(go.Bar(name=entry, x=list(metrics), y=means,
                             error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low}))
    fig.update_layout(title="Metrics with 95% bootstrap intervals", barmode="group", yaxis_title="mean over units")
    return fig


def recall_curves(rows: Sequence[Row]) -> Any:
    import plotly.graph_objects as go

    fig = _figure()
    recalls = sorted((m for m in metric_names(rows) if m.startswith("recall@")), key=lambda m: int(m.split("@")[1]))
    for entry in entries(rows):
        ks = [int(m.split("@")[1]) for m in recalls]
        ys = [float(np.mean(list(values(rows, entry, m).values()) or [0.0])) for m in recalls]
        fig.add_trace(go.Scatter(name=entry, x=ks, y=ys, mode="lines+markers"))
    fig.update_layout(title="recall@K", xaxis_title="K", yaxis_title="recall")
    return fig


def paired_forest(rows: Sequence[Row], metrics: Sequence[str]) -> tuple[Any, list[dict[str, Any]]]:
    """Each entry against the first, unit by unit, with paired bootstrap intervals and p-values."""
    import plotly.graph_objects as go

    names = entries(rows)
    found: list[dict[str, Any]] = []
    for entry in names[1:]:
        for metric in metrics:
            base, other = values(rows, names[0], metric), values(rows, entry, metric)
            units = [u for u in base if u in other]
            if not units:
                continue
            d = paired_bootstrap([base[u] for u in units], [other[u] for u in units])
            found.append({"entry": entry, "baseline": names[0], "metric": metric, **d.as_dict()})
    fig = _figure()
    labels = [f"{f['entry']} − {f['baseline']}: {f['metric']}" for f in found]
    fig.add_trace(go.Scatter(x=[f["mean"] for f in found], y=labels, mode="markers", name="difference",
                             error_x={"type": "data", "symmetric": False,
                                      "array": [f["ci_high"] - f["mean"] for f in found],
                                      "arrayminus": [f["mean"] - f["ci_low"] for f in found]}))
    fig.add_vline(x=0, line_dash="dash")
    fig.update_layout(title="Paired differences to the first entry (95% bootstrap intervals)" if found else
                      "Paired differences: only one entry in this run", xaxis_title="difference")
    return fig, found


def position_bias_plot(rows: Sequence[Row]) -> tuple[Any, dict[str, Any]]:
    import plotly.graph_objects as go

    fig = _figure()
    summaries: dict[str, Any] = {}
    for entry in entries(rows):
        shown = [r for r in rows if r["entry"] == entry and r.get("list_length")]
        if not shown:
            continue
        n = max(int(r["list_length"]) for r in shown)
        with_target = [r for r in shown if r.get("target_position") is not None]
        bias = position_bias([r["target_position"] for r in with_target], [r["target_rank"] for r in with_target],
                             [r["first_position"] for r in shown], n)
        summaries[entry] = bias.as_dict()
        fig.add_trace(go.Scatter(name=f"{entry}: target's output rank", x=list(range(1, n + 1)),
                                 y=[None if v is None else v + 1 for v in bias.mean_rank_by_position],
                                 mode="lines+markers"))
        fig.add_trace(go.Bar(name=f"{entry}: share ranked first", x=list(range(1, n + 1)), y=bias.first_choice_share,
                             yaxis="y2", opacity=0.4))
    fig.update_layout(title="Position bias: where the target stood (x) against where it came out",
                      xaxis_title="position in the list shown", yaxis_title="mean output rank of the target",
                      yaxis2={"title": "share of lists whose first pick stood here", "overlaying": "y",
                              "side": "right", "range": [0, 1]})
    return fig, summaries


def latency_histogram(rows: Sequence[Row]) -> Any:
    import plotly.graph_objects as go

    fig = _figure()
    by_entry: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("latency_s") is not None:
            by_entry[r["entry"]].append(float(r["latency_s"]))
    for entry, latencies in by_entry.items():
        fig.add_trace(go.Histogram(name=entry, x=latencies, opacity=0.6))
    fig.update_layout(title="Latency per request" if by_entry else "Latency: none recorded in this run",
                      barmode="overlay", xaxis_title="seconds", yaxis_title="requests")
    return fig
