"""Per-unit rows for reports: one row per scored unit and entry (ranker or variant) with its metric values,
and, for rerankers, where the target stood in the list shown and where it came out (position bias)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.metrics import per_user_metrics
from eval.protocols import Case

Row = dict[str, Any]


def list_positions(shown: Sequence[str], ranked: Sequence[str], target: str | None) -> dict[str, Any]:
    """Where the target stood in the shown list and where the ranker put it (0-based), and which shown
    position the ranker's first pick came from."""
    position = {item: p for p, item in enumerate(shown)}
    inside = target is not None and target in position and target in ranked
    return {"list_length": len(shown), "first_position": position.get(ranked[0], 0) if ranked else 0,
            "target_position": position[target] if inside and target is not None else None,
            "target_rank": list(ranked).index(target) if inside and target is not None else None}


def user_rows(entry: str, cases: Sequence[Case], rankings: Sequence[Sequence[str]],
              shown: Sequence[Sequence[str]] | None = None) -> list[Row]:
    metrics = per_user_metrics(rankings, [{c.target} for c in cases])
    rows = []
    for i, (case, ranking) in enumerate(zip(cases, rankings, strict=True)):
        row: Row = {"entry": entry, "unit": case.user, "target": case.target, "ranked": list(ranking[:20]),
                    "metrics": {name: float(values[i]) for name, values in metrics.items()}}
        if shown is not None:
            row.update(list_positions(shown[i], ranking, case.target))
        rows.append(row)
    return rows


def crs_units(rows: Sequence[Row], cutoffs: Sequence[int] = (1, 5, 10, 20)) -> list[Row]:
    """He et al.'s samples from the per-turn rows of eval.crs: one unit per target, in both variants."""
    units = []
    for row in rows:
        ranked, earlier = row["ranked"], set(row["earlier"])
        fresh = [i for i in ranked if i not in earlier]
        for variant, targets, order in (("all", row["targets"], ranked), ("new_items", row["new_targets"], fresh)):
            for target in targets:
                units.append({"entry": variant, "unit": f"{row['dialogue']}/{row['turn']}/{target}",
                              "latency_s": row["seconds"],
                              "metrics": {f"recall@{k}": float(target in order[:k]) for k in cutoffs}})
    return units
