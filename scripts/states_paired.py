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

from eval.states import Mention, classification_metrics, confusion, paired_dialogue_bootstrap


def read_mentions(folder: Path) -> list[Mention]:
    """The run's scored movies as the protocol wrote them, one row each."""
    with (folder / "rows.jsonl").open(encoding="utf-8") as handle:
        return [Mention(r["dialogue"], r["movie"], r.get("title", r["movie"]), r["annotation"], r["state"],
                        r.get("in_catalog", True), r.get("read_as")) for r in map(json.loads, handle)]


def by_dialogue(mentions: list[Mention]) -> dict[str, np.ndarray]:
    """Each dialogue's confusion matrix (rows: the annotation, columns: the state)."""
    grouped: dict[str, list[Mention]] = {}
    for m in mentions:
        grouped.setdefault(m.dialogue, []).append(m)
    return {d: confusion(ms) for d, ms in grouped.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("variant", type=Path)
    args = parser.parse_args(argv)
    base_mentions, variant_mentions = read_mentions(args.baseline), read_mentions(args.variant)
    if {(m.dialogue, m.movie, m.expected) for m in base_mentions} != \
            {(m.dialogue, m.movie, m.expected) for m in variant_mentions}:
        raise SystemExit("the runs scored different movies or annotations")
    base, variant = by_dialogue(base_mentions), by_dialogue(variant_mentions)
    dialogues = sorted(base)
    a = [base[d] for d in dialogues]
    b = [variant[d] for d in dialogues]
    figures = {name: {k: round(classification_metrics(confusion(ms))[k], 4) for k in ("accuracy", "macro_f1")}
               for name, ms in (("baseline", base_mentions), ("variant", variant_mentions))}
    paired = {metric: {k: round(v, 4) for k, v in d.items()} for metric, d in paired_dialogue_bootstrap(a, b).items()}
    print(json.dumps({"dialogues": len(dialogues), "mentions": len(base_mentions), **figures,
                      "paired": paired}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
