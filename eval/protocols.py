"""Evaluation protocols. `loo` is LlamaRec's leave-one-out:

iterated 5-core filtering of users and items; each user's interactions sorted by time (ties by the
item's catalog position, as LlamaRec sorts by (timestamp, item id)); the last item is the test target,
the second to last the validation target; ranking over all remaining items, the user's history
excluded. Everything learned from interactions is fitted on the training part (all but the last two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import RecagentError
from index.collab import History, user_histories
from index.dataset import Dataset


@dataclass(frozen=True)
class Case:
    """One user to rank for: the history (oldest first) and the held-out target."""

    user: str
    history: list[str]
    timestamps: list[int]
    target: str
    candidates: list[str] | None = None  # a fixed set to rank (candidates20); None: all items


@dataclass
class Split:
    """The protocol's view of a dataset: the filtered catalog, training data and the cases."""

    protocol: str
    train: Dataset  # filtered catalog + training interactions only
    validation: list[Case]
    test: list[Case]
    counts: dict[str, int]

    def cases(self, split: str) -> list[Case]:
        if split not in ("validation", "test"):
            raise RecagentError(f"unknown split {split!r}; use validation or test")
        return self.validation if split == "validation" else self.test


def k_core(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than k interactions, repeatedly, until none is left."""
    frame = interactions
    while True:
        item_counts = frame.groupby("item").size()
        user_counts = frame.groupby("user").size()
        if (item_counts >= k).all() and (user_counts >= k).all():
            return frame
        frame = frame[frame["item"].isin(item_counts.index[item_counts >= k])]
        frame = frame[frame["user"].isin(frame.groupby("user").size().pipe(lambda s: s.index[s >= k]))]


def _case(history: History, ids: list[str], end: int) -> Case:
    return Case(history.user, [ids[p] for p in history.items[:end]],
                [int(t) for t in history.timestamps[:end]], ids[history.items[end]])


def leave_one_out(dataset: Dataset, min_count: int = 5) -> Split:
    frame = k_core(dataset.interactions, min_count)
    if frame.empty:
        raise RecagentError(f"{dataset.name}: nothing is left after {min_count}-core filtering")
    kept = set(frame["item"])
    items = {i: item for i, item in dataset.items.items() if i in kept}
    ids = list(items)
    histories = user_histories(frame, ids)
    train_rows = []
    validation, test = [], []
    for h in histories:
        train_rows.append(pd.DataFrame({"user": h.user, "item": [ids[p] for p in h.items[:-2]],
                                        "timestamp": h.timestamps[:-2].astype(np.int64)}))
        validation.append(_case(h, ids, len(h.items) - 2))
        test.append(_case(h, ids, len(h.items) - 1))
    train_frame = pd.concat(train_rows, ignore_index=True)
    train_frame["rating"] = np.nan
    train = Dataset(f"{dataset.name}-loo", items, train_frame, dataset.files, item_noun=dataset.item_noun,
                    timed=dataset.timed)
    counts = {"users": len(histories), "items": len(items), "interactions": len(frame)}
    return Split("loo", train, validation, test, counts)


def _sampled_candidates(case: Case, items: list[str], catalogue: frozenset[str], count: int,
                        rng: np.random.Generator) -> Case | None:
    """The case with its target and count - 1 random unseen items, shuffled; None when the user has seen all
    but fewer than count - 1 items of the catalogue (`catalogue`, the set of `items`: a small catalogue, where
    sampling would never end)."""
    seen = set(case.history) | {case.target}
    if len(catalogue - seen) < count - 1:
        return None
    negatives: list[str] = []
    while len(negatives) < count - 1:
        for pick in rng.choice(len(items), size=min(2 * count, len(items)), replace=False):
            item = items[int(pick)]
            if item not in seen and item not in negatives:
                negatives.append(item)
                if len(negatives) == count - 1:
                    break
    candidates = [case.target, *negatives]
    rng.shuffle(candidates)
    return Case(case.user, case.history, case.timestamps, case.target, candidates)


def candidates20(dataset: Dataset, min_count: int = 5, count: int = 20, seed: int = 0) -> Split:
    """LLMRank's setting on top of `loo`: rank the target among 19 random unseen items, shuffled.

    It measures a ranker alone, without retrieval. Negatives are drawn uniformly from the filtered
    catalog with a fixed seed per split, so every ranker sees the same lists. A user who has seen all but
    fewer than count - 1 items is left out (only on small catalogues), and `counts` says how many per split.
    """
    base = leave_one_out(dataset, min_count)
    items = list(base.train.items)
    catalogue = frozenset(items)
    validation_rng, test_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    validation = [c for c in (_sampled_candidates(c, items, catalogue, count, validation_rng) for c in base.validation)
                  if c]
    test = [c for c in (_sampled_candidates(c, items, catalogue, count, test_rng) for c in base.test) if c]
    left_out = {"validation_users_left_out": len(base.validation) - len(validation),
                "test_users_left_out": len(base.test) - len(test)}
    counts = {**base.counts, **{k: v for k, v in left_out.items() if v}}
    return Split("candidates20", base.train, validation, test, counts)


PROTOCOLS = {"loo": leave_one_out, "candidates20": candidates20}
