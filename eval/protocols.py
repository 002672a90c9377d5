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

from index.collab import History, user_histories
from index.dataset import Dataset
from index.errors import RecagentError


@dataclass(frozen=True)
class Case:
    """One user to rank for: the history (oldest first) and the held-out target."""

    user: str
    history: list[str]
    timestamps: list[int]
    target: str


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
    train = Dataset(f"{dataset.name}-loo", items, train_frame, dataset.files)
    counts = {"users": len(histories), "items": len(items), "interactions": len(frame)}
    return Split("loo", train, validation, test, counts)


PROTOCOLS = {"loo": leave_one_out}
