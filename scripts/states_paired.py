"""Paired difference of two `states` runs on the same ReDial dialogues: accuracy and macro-F1, resampled by dialogue.

    python scripts/states_paired.py runs/<baseline run folder> runs/<variant run folder>

Each run folder's rows.jsonl has one row per seeker-mentioned movie (its annotation and the state's label); the
movies must be the same in both runs. Prints one JSON object: both runs' figures and the variant minus the
baseline with 95% intervals that draw the same dialogues for both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.states import LABELS, classification_metrics, paired_dialogue_bootstrap


def confusions(folder: Path) -> dict[str, np.ndarray]:
    """Each dialogue's confusion matrix (rows: the annotation, columns: the state), keyed by dialogue and movie
    so that two runs can be checked to score the same mentions."""
    matrices: dict[str, np.ndarray] = {}
    with (folder / "rows.jsonl").open(encoding="utf-8") as handle:
        for row in map(json.loads, handle):
            matrix = matrices.setdefault(row["dialogue"], np.zeros((len(LABELS), len(LABELS)), dtype=np.int64))
            matrix[LABELS.index(row["annotation"]), LABELS.index(row["state"])] += 1
    return matrices


def mentions(folder: Path) -> set[tuple[str, str, str]]:
    with (folder / "rows.jsonl").open(encoding="utf-8") as handle:
        return {(r["dialogue"], r["movie"], r["annotation"]) for r in map(json.loads, handle)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("variant", type=Path)
    args = parser.parse_args(argv)
    if mentions(args.baseline) != mentions(args.variant):
        raise SystemExit("the runs scored different movies or annotations")
    base, variant = confusions(args.baseline), confusions(args.variant)
    dialogues = sorted(base)
    a = [base[d] for d in dialogues]
    b = [variant[d] for d in dialogues]
    figures = {name: {k: round(classification_metrics(np.sum(m, axis=0))[k], 4) for k in ("accuracy", "macro_f1")}
               for name, m in (("baseline", a), ("variant", b))}
    paired = {metric: {k: round(v, 4) for k, v in d.items()} for metric, d in paired_dialogue_bootstrap(a, b).items()}
    print(json.dumps({"dialogues": len(dialogues), "mentions": int(sum(m.sum() for m in a)), **figures,
                      "paired": paired}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
