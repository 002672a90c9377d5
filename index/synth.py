"""A synthetic shop catalog and its interactions, in the generic dataset format (dataset.toml), for
benchmarks at sizes no public dataset has: `recagent data synth NAME --items N --users M --interactions K`.

Items have a title, a description, a category, a brand and tags, so the dialogue's catalog-driven
constraints work on them ("something for the kitchen, no Velora"). Popularity follows a power law
(Zipf over a random order of the items); user activity too (every user has at least five
interactions when K allows, as leave-one-out evaluation needs). Each user prefers one category, so the
collaborative models have something to learn. Timestamps rise per user. No (user, item) pair repeats.
Everything is vectorised (a million items and ten million interactions in about a minute) and
deterministic for a seed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InvalidRequest

CATEGORIES = {
    "Kitchen": ["Kettle", "Skillet", "Knife Set", "Blender", "Teapot", "Cutting Board"],
    "Garden": ["Hose", "Pruner", "Planter", "Rake", "Seed Kit", "Watering Can"],
    "Toys": ["Puzzle", "Robot", "Doll", "Kite", "Train Set", "Building Blocks"],
    "Books": ["Novel", "Cookbook", "Atlas", "Biography", "Field Guide", "Anthology"],
    "Music": ["Guitar", "Ukulele", "Keyboard", "Drum Pad", "Harmonica", "Metronome"],
    "Sports": ["Yoga Mat", "Racket", "Football", "Jump Rope", "Dumbbell", "Helmet"],
    "Outdoor": ["Tent", "Lantern", "Backpack", "Sleeping Bag", "Compass", "Hammock"],
    "Office": ["Desk Lamp", "Notebook", "Stapler", "Monitor Stand", "Pen Set", "Organizer"],
    "Beauty": ["Face Cream", "Hair Dryer", "Perfume", "Lip Balm", "Brush Set", "Serum"],
    "Electronics": ["Headphones", "Speaker", "Charger", "Webcam", "Smartwatch", "Router"],
    "Pets": ["Dog Bed", "Cat Tree", "Leash", "Aquarium", "Chew Toy", "Feeder"],
    "Baby": ["Stroller", "Rattle", "Crib Mobile", "Bib Set", "Baby Monitor", "Carrier"],
    "Tools": ["Drill", "Hammer", "Wrench Set", "Tape Measure", "Saw", "Level"],
    "Automotive": ["Car Vacuum", "Jump Starter", "Seat Cover", "Dash Cam", "Tire Gauge", "Wax"],
    "Health": ["Thermometer", "Massager", "Scale", "First Aid Kit", "Pill Box", "Heating Pad"],
    "Games": ["Board Game", "Card Game", "Chess Set", "Dice Set", "Game Controller", "Dartboard"],
    "Home": ["Throw Blanket", "Candle", "Vase", "Wall Clock", "Rug", "Cushion"],
    "Jewelry": ["Necklace", "Ring", "Bracelet", "Earrings", "Pendant", "Brooch"],
    "Shoes": ["Sneakers", "Boots", "Sandals", "Loafers", "Slippers", "Trail Runners"],
    "Clothing": ["Jacket", "Sweater", "Scarf", "Raincoat", "Hoodie", "Shirt"],
    "Grocery": ["Coffee", "Tea Sampler", "Olive Oil", "Honey", "Chocolate", "Spice Set"],
    "Art Supplies": ["Sketchbook", "Watercolor Set", "Easel", "Pastels", "Brush Kit", "Canvas"],
    "Luggage": ["Suitcase", "Duffel", "Travel Pouch", "Garment Bag", "Carry-On", "Packing Cubes"],
    "Camera": ["Tripod", "Lens", "Camera Bag", "Flash", "Memory Card", "Gimbal"],
}
TAGS = ["compact", "wireless", "handmade", "vintage", "eco", "waterproof", "lightweight", "premium", "budget",
        "foldable", "rechargeable", "organic", "ergonomic", "giftable", "durable", "minimalist", "colorful",
        "quiet", "portable", "classic", "smart", "kids", "travel", "professional", "retro", "modular",
        "stainless", "bamboo", "leather", "cotton", "glass", "wooden", "solar", "magnetic", "adjustable",
        "stackable", "reusable", "scented", "ceramic", "insulated"]
ADJECTIVES = ["Bright", "Quiet", "Swift", "Golden", "Little", "Grand", "Silver", "Urban", "Wild", "Cozy",
              "Nordic", "Royal", "Simple", "Lucky", "Happy", "Clever", "Bold", "Gentle", "Rapid", "Sunny"]
_SYLLABLES = ["ve", "lo", "ra", "no", "ki", "ta", "mi", "so", "lu", "dre", "va", "zen", "or", "bel", "ka",
              "fi", "mo", "tri", "sa", "ne", "pal", "quo", "ri", "xa"]
DAY_S = 86_400
START = 1_600_000_000  # 2020-09-13: the first interaction of the earliest user


@dataclass(frozen=True)
class SynthReport:
    name: str
    folder: str
    items: int
    users: int
    interactions: int
    seed: int
    seconds: float = 0.0


def _brands(count: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        parts = rng.integers(len(_SYLLABLES), size=int(rng.integers(2, 4)))
        name = "".join(_SYLLABLES[p] for p in parts).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Power-law weights over a random order of n things."""
    ranks = rng.permutation(n)
    weights = 1.0 / np.power(ranks + 1.0, exponent)
    return weights / weights.sum()


def _catalog(n: int, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The catalog table, each item's category index and each item's popularity weight."""
    names = list(CATEGORIES)
    category = rng.choice(len(names), size=n, p=_zipf_weights(len(names), 0.6, rng))
    brands = _brands(min(2000, max(20, n // 50)), rng)
    brand = rng.choice(len(brands), size=n, p=_zipf_weights(len(brands), 0.8, rng))
    noun = rng.integers(6, size=n)
    adjective = rng.integers(len(ADJECTIVES), size=n)
    tag_a = rng.integers(len(TAGS), size=n)
    tag_b = (tag_a + rng.integers(1, len(TAGS), size=n)) % len(TAGS)
    width = len(str(n))
    ids = [f"p{i:0{width}d}" for i in range(n)]
    nouns = [CATEGORIES[names[c]][k] for c, k in zip(category.tolist(), noun.tolist(), strict=True)]
    titles = [f"{ADJECTIVES[a]} {brands[b]} {w} {i + 1}"
              for i, (a, b, w) in enumerate(zip(adjective.tolist(), brand.tolist(), nouns, strict=True))]
    descriptions = [f"A {TAGS[x]}, {TAGS[y]} {w.lower()} from {brands[b]}, in {names[c].lower()}."
                    for x, y, w, b, c in zip(tag_a.tolist(), tag_b.tolist(), nouns, brand.tolist(), category.tolist(),
                                             strict=True)]
    table = pa.table({
        "item_id": ids, "title": titles, "description": descriptions,
        "category": [names[c] for c in category.tolist()], "brand": [brands[b] for b in brand.tolist()],
        "tags": [f"{TAGS[x]}|{TAGS[y]}" for x, y in zip(tag_a.tolist(), tag_b.tolist(), strict=True)],
    })
    return table, category, _zipf_weights(n, 1.05, rng)


def _sample(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    cumulative = np.cumsum(weights)
    picks = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    return np.minimum(picks, len(weights) - 1)


def _activity(users: int, interactions: int, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: at least five (or K/M when that is fewer), the rest spread by a power law."""
    floor = min(5, interactions // users)
    extra = interactions - floor * users
    shares = rng.pareto(1.5, size=users) + 1.0
    shares = np.minimum(shares, 50 * np.median(shares))  # a heavy tail, but no single user with half the data
    return floor + rng.multinomial(extra, shares / shares.sum()) if extra > 0 else np.full(users, floor)


def _interactions(counts: np.ndarray, category: np.ndarray, popularity: np.ndarray, taste: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) rows: with probability `taste` from the user's favourite category, else from all items."""
    n_categories = int(category.max()) + 1
    favourite = rng.choice(n_categories, size=len(counts), p=np.bincount(category, minlength=n_categories)
                           / len(category))
    users = np.repeat(np.arange(len(counts)), counts)
    items = _sample(popularity, len(users), rng)
    in_taste = rng.random(len(users)) < taste
    for c in range(n_categories):
        rows = np.flatnonzero(in_taste & (favourite[users] == c))
        members = np.flatnonzero(category == c)
        if len(rows) and len(members):
            items[rows] = members[_sample(popularity[members], len(rows), rng)]
    return users, items


def _first_pairs(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Each (user, item) pair once (its first row), rows grouped by user in their original order."""
    _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
    keep = np.sort(first)
    order = np.argsort(users[keep], kind="stable")
    return users[keep][order], items[keep][order]


def _timestamps(users: np.ndarray, n_users: int, rng: np.random.Generator) -> np.ndarray:
    """Per user: a start within two years, then gaps of about a day (exponential), in row order."""
    start = START + rng.integers(0, 730 * DAY_S, size=n_users)
    gaps = rng.exponential(DAY_S, size=len(users)).astype(np.int64) + 1
    total = np.cumsum(gaps)
    first_row = np.searchsorted(users, np.arange(n_users))
    offset = total - np.repeat(total[first_row] - gaps[first_row], np.bincount(users, minlength=n_users))
    return start[users] + offset


def synthesize(folder: Path, items: int, users: int, interactions: int, seed: int = 0,
               taste: float = 0.7) -> SynthReport:
    """Write catalog.parquet, interactions.parquet and dataset.toml into `folder`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", folder.name):
        raise InvalidRequest(f"dataset name {folder.name!r}: use letters, digits, '.', '_' and '-'")
    if items < 10 or users < 1 or interactions < users:
        raise InvalidRequest("need at least 10 items, 1 user and as many interactions as users")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    catalog, category, popularity = _catalog(items, rng)
    counts = np.minimum(_activity(users, interactions, rng), items)
    user_rows, item_rows = _first_pairs(*_interactions(counts, category, popularity, taste, rng), items)
    for attempt in range(30):  # repeated pairs are dropped and drawn again; later rounds draw uniformly
        missing = counts - np.bincount(user_rows, minlength=users)
        if not missing.any():
            break
        weights = popularity if attempt < 8 else np.full(items, 1.0 / items)
        more_users, more_items = _interactions(missing, category, weights, taste if attempt < 4 else 0.0, rng)
        user_rows, item_rows = _first_pairs(np.concatenate([user_rows, more_users]),
                                            np.concatenate([item_rows, more_items]), items)
    times = _timestamps(user_rows, users, rng)
    width = len(str(users))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(catalog, folder / "catalog.parquet")
    user_ids = pa.array([f"u{u:0{width}d}" for u in range(users)])
    pq.write_table(pa.table({"user_id": user_ids.take(pa.array(user_rows)),
                             "item_id": catalog.column("item_id").take(pa.array(item_rows)),
                             "timestamp": pa.array(times, type=pa.int64())}), folder / "interactions.parquet")
    (folder / "dataset.toml").write_text(
        "# written by `recagent data synth` (index/synth.py)\n"
        'catalog = "catalog.parquet"\ninteractions = "interactions.parquet"\n'
        'id_column = "item_id"\ntitle_column = "title"\ntext_columns = ["description"]\n'
        'attribute_columns = ["category", "brand", "tags"]\nuser_column = "user_id"\nitem_column = "item_id"\n'
        f'timestamp_column = "timestamp"\nitem_noun = "product"\n# seed = {seed}\n', encoding="utf-8")
    return SynthReport(folder.name, str(folder), items, len(np.unique(user_rows)), len(user_rows), seed,
                       round(time.perf_counter() - started, 2))
