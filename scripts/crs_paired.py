"""Paired difference of two `crs` runs on the same dialogues: recall@K per scored turn, resampled by turn.

    python scripts/crs_paired.py runs/<baseline run folder> runs/<variant run folder> [--k 10]

Each run folder's rows.jsonl has one row per scored turn (its hits@K over the turn's targets); the turns must be
the same in both runs. Prints one JSON object: both recalls (hits over targets) and the paired bootstrap
interval of the difference in hits per turn, divided by the mean targets per turn (so it reads as recall).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.stats import paired_bootstrap


def rows(folder: Path) -> dict[tuple[str, int], dict[str, float]]:
    with (folder / "rows.jsonl").open(encoding="utf-8") as handle:
        return {(r["dialogue"], r["turn"]): r for r in map(json.loads, handle)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("variant", type=Path)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    base, variant = rows(args.baseline), rows(args.variant)
    if set(base) != set(variant):
        raise SystemExit(f"the runs scored different turns ({len(base)} and {len(variant)})")
    turns = sorted(base)
    targets = np.array([len(base[t]["targets"]) for t in turns], dtype=float)
    a = np.array([base[t][f"hits@{args.k}"] for t in turns], dtype=float)
    b = np.array([variant[t][f"hits@{args.k}"] for t in turns], dtype=float)
    d = paired_bootstrap(a, b)
    scale = targets.mean()
    print(json.dumps({"turns": len(turns), "targets": int(targets.sum()), f"baseline_recall@{args.k}":
                      round(a.sum() / targets.sum(), 4), f"variant_recall@{args.k}": round(b.sum() / targets.sum(), 4),
                      "difference": round(d.mean / scale, 4),
                      "ci95": [round(d.ci_low / scale, 4), round(d.ci_high / scale, 4)], "p": round(d.p_value, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
