"""Transfer what one catalog's data knows to another through a title/year mapping.

ReDial's 500 sample training dialogues are too few to learn collaborative signals from, but most of its
movies are also in MovieLens. `map_titles` matches the two catalogs by normalised title and year;
`with_transfer` then adds the source's interactions (re-keyed to the target's item ids, users prefixed)
and, optionally, its categorical attributes (genres, tags) to the target dataset. Everything fitted from
interactions (EASE vectors, co-occurrence, transitions, popularity) then carries the source's knowledge.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace

import pandas as pd

from index.config import DataConfig, TransferConfig
from index.dataset import AttributeValue, Dataset, Item, year_from_title
from index.loaders import load_dataset

_YEAR_END = re.compile(r"\s*\((\d{4})\)\s*$")
_ASIDE = re.compile(r"\(([^()]*)\)")
_ARTICLE_END = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|der|die|das)$", re.IGNORECASE)


def title_keys(title: str) -> list[str]:
    """Comparison keys of a title: lower-case words without the year, leading articles or asides.

    'Matrix, The (1999)' and 'The Matrix (1999)' both give 'matrix'; MovieLens's alternative titles in
    parentheses ('Seven (a.k.a. Se7en) (1995)') give a second key ('se7en').
    """
    base = _YEAR_END.sub("", title).strip()
    asides = _ASIDE.findall(base)
    main = _ASIDE.sub(" ", base).strip()
    keys = [_key(main)]
    for aside in asides:
        aside = re.sub(r"^(a\.k\.a\.|aka)\s*", "", aside.strip(), flags=re.IGNORECASE)
        if aside:
            keys.append(_key(aside))
    return [k for k in dict.fromkeys(keys) if k]


def _key(text: str) -> str:
    text = _ARTICLE_END.sub(r"\2 \1", text.strip())
    words = re.sub(r"[^a-z0-9]+", " ", text.lower().replace("&", " and ")).split()
    if len(words) > 1 and words[0] in {"the", "a", "an"}:
        words = words[1:]
    return " ".join(words)


@dataclass(frozen=True)
class TitleMapping:
    """Target item id -> source item id, and how many matched by exact year or a year off by one."""

    pairs: dict[str, str]
    exact: int
    near_year: int
    no_year: int

    def summary(self, target_items: int) -> dict[str, float | int]:
        return {"mapped": len(self.pairs), "target_items": target_items,
                "share": round(len(self.pairs) / max(target_items, 1), 4), "exact_year": self.exact,
                "year_off_by_one": self.near_year, "title_only": self.no_year}


def map_titles(source: dict[str, Item], target: dict[str, Item]) -> TitleMapping:
    """Match by (title key, year); then year +-1 (release vs. festival years); a target without a year
    matches a title that is unique in the source."""
    by_key_year: dict[tuple[str, int | None], list[str]] = defaultdict(list)
    by_key: dict[str, list[str]] = defaultdict(list)
    for item in source.values():
        year = year_from_title(item.title)
        for k in title_keys(item.title):
            by_key_year[(k, year)].append(item.id)
            by_key[k].append(item.id)
    pairs: dict[str, str] = {}
    exact = near = no_year = 0
    for item in target.values():
        year = year_from_title(item.title)
        keys = title_keys(item.title)
        found: str | None = None
        if year is not None:
            found = next((by_key_year[(k, year)][0] for k in keys if by_key_year.get((k, year))), None)
            if found is not None:
                exact += 1
            else:
                found = next((by_key_year[(k, y)][0] for k in keys for y in (year - 1, year + 1)
                              if by_key_year.get((k, y))), None)
                near += found is not None
        else:
            found = next((by_key[k][0] for k in keys if len(set(by_key.get(k, []))) == 1), None)
            no_year += found is not None
        if found is not None:
            pairs[item.id] = found
    return TitleMapping(pairs, exact, near, no_year)


def moved_interactions(source: Dataset, mapping: TitleMapping, config: TransferConfig) -> pd.DataFrame:
    """The source's interactions on mapped items, keyed by the target's item ids; users prefixed."""
    reverse: dict[str, list[str]] = defaultdict(list)
    for target_id, source_id in mapping.pairs.items():
        reverse[source_id].append(target_id)
    frame = source.interactions
    if config.min_rating is not None and frame["rating"].notna().any():
        frame = frame[frame["rating"] >= config.min_rating]
    frame = frame[frame["item"].isin(reverse)]
    first = {s: ts[0] for s, ts in reverse.items()}  # duplicates in the target keep their first id
    return pd.DataFrame({"user": f"{source.name}:" + frame["user"].astype(str),
                         "item": frame["item"].map(first).astype(str),
                         "timestamp": frame["timestamp"].to_numpy(), "rating": frame["rating"].to_numpy()})


def with_transfer(target: Dataset, source: Dataset, config: TransferConfig) -> tuple[Dataset, dict[str, Dataset]]:
    """The target with the source's attributes (and, in merge mode, interactions) carried over the title
    mapping, and in separate mode the source's view of the target's catalog: the same items with only the
    source's interactions, to be indexed as a namespace of its own."""
    mapping = map_titles(source.items, target.items)
    items = target.items
    notes = [*target.notes, f"title/year mapping to {source.name}: {mapping.summary(len(target.items))}"]
    if config.attributes:
        items = {}
        for item_id, item in target.items.items():
            source_item = source.items.get(mapping.pairs.get(item_id, ""))
            extra: dict[str, AttributeValue] = {}
            if source_item is not None:
                extra = {k: v for k, v in source_item.attributes.items() if isinstance(v, list) and v
                         and k not in item.attributes}
            items[item_id] = replace(item, attributes={**item.attributes, **extra}) if extra else item
    interactions = target.interactions
    timed = target.timed
    views: dict[str, Dataset] = {}
    if config.interactions:
        moved = moved_interactions(source, mapping, config)
        notes.append(f"{len(moved)} {source.name} interactions on mapped items ({config.mode})")
        if config.mode == "merge":
            interactions = pd.concat([target.interactions, moved], ignore_index=True)
            timed = timed and source.timed
        else:
            views[source.name] = Dataset(f"{target.name}-{source.name}", items, moved, list(source.files),
                                         item_noun=target.item_noun, notes=[f"{source.name} over {target.name}"],
                                         timed=source.timed)
    data = Dataset(target.name, items, interactions, [*target.files, *source.files], dict(target.skipped),
                   item_noun=target.item_noun, notes=notes, timed=timed)
    return data, views


def load_with_transfer(name_or_path: str, data: DataConfig) -> tuple[Dataset, dict[str, Dataset]]:
    """Load a dataset and apply the transfer configured for it (data.transfer), if any: the dataset and
    the source views to index beside it (separate mode)."""
    dataset = load_dataset(name_or_path, data.data_dir)
    config = data.transfer.get(dataset.name)
    if config is None or not (config.interactions or config.attributes):
        return dataset, {}
    if not (data.data_dir / config.source).is_dir():
        dataset.notes.append(f"transfer source {config.source!r} not found in {data.data_dir}; none applied")
        return dataset, {}
    return with_transfer(dataset, load_dataset(config.source, data.data_dir), config)
