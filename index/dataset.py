"""The in-memory shape every loader produces: a catalog of items and a table of interactions."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

AttributeValue = str | int | float | bool | list[str]

_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Item:
    """One catalog entry. `attributes` hold filterable facts such as genres or year."""

    id: str
    title: str
    description: str = ""
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass
class Dataset:
    """A catalog plus interactions (columns: user, item, timestamp, rating), in file order."""

    name: str
    items: dict[str, Item]
    interactions: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    item_noun: str = "item"  # what the catalog holds ("movie", "artist"), for prompts and replies
    notes: list[str] = field(default_factory=list)  # how the loader read it, e.g. file order for time
    timed: bool = True  # the timestamps are real times (seconds); False: an order stands in (file order, turns)

    def content_hash(self) -> str:
        """A hash of the catalog and interactions, saved with evaluation runs."""
        h = hashlib.sha256()
        for item in self.items.values():
            h.update(repr((item.id, item.title, item.description, sorted(item.attributes.items()))).encode())
        frame = self.interactions
        for col in ("user", "item"):
            h.update("\x1f".join(frame[col].astype(str)).encode())
        h.update(np.ascontiguousarray(frame["timestamp"].to_numpy(np.int64)).tobytes())
        return h.hexdigest()[:16]


def year_from_title(title: str) -> int | None:
    """MovieLens titles end in '(YYYY)'; return that year or None."""
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def interactions_frame(users: list[str], items: list[str], timestamps: list[int],
                       ratings: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "user": pd.Series(users, dtype=str),
        "item": pd.Series(items, dtype=str),
        "timestamp": pd.Series(timestamps, dtype=np.int64),
        "rating": pd.Series(ratings, dtype=np.float64),
    })
