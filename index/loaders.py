"""Dataset loaders: MovieLens (CSV and 100k formats), Last.fm HetRec 2011, and a generic format.

`load_dataset` finds a dataset by name under the data folder (or takes a folder path) and detects the
format from the files present. Malformed input raises DataError naming the file and line; interactions
that name items missing from the catalog are skipped and counted in `Dataset.skipped`.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import DataError, DatasetNotFound
from index.dataset import AttributeValue, Dataset, Item, interactions_frame, year_from_title
from index.readers import Row, columns_of, parse_float, parse_int, read_delimited, read_table
from index.redial import load_redial


class GenericFormat(BaseModel):
    """Column mapping for a user's own catalog and interactions files (CSV, JSONL or Parquet)."""

    model_config = ConfigDict(extra="forbid")

    catalog: Path
    interactions: Path
    id_column: str = "item_id"
    title_column: str = "title"
    text_columns: list[str] = []
    attribute_columns: list[str] = []
    list_separator: str = "|"
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str | None = Field("timestamp", description="Unix seconds; '' or absent from the file: "
                                                                   "file order stands in for time")
    rating_column: str | None = None
    encoding: str = "utf-8"
    item_noun: str = Field("item", pattern=r"^[a-z][a-z -]{0,30}$", description="what one item is, e.g. 'product'")


def _add_item(items: dict[str, Item], lines: dict[str, int], path: Path, line: int, item: Item) -> None:
    if not item.id:
        raise DataError(path, "empty item id", line=line)
    if item.id in items:
        raise DataError(path, f"duplicate item id {item.id!r} (first on line {lines[item.id]})", line=line)
    items[item.id] = item
    lines[item.id] = line


def _collect_interactions(rows: Iterable[Row], path: Path, items: dict[str, Item], *, user: str, item: str,
                          timestamp: str | None, rating: str | None,
                          skipped: dict[str, int]) -> tuple[list[str], list[str], list[int], list[float]]:
    users: list[str] = []
    item_ids: list[str] = []
    times: list[int] = []
    ratings: list[float] = []
    unknown = 0
    for line, row in rows:
        item_id = str(row[item]).strip()
        if item_id not in items:
            unknown += 1
            continue
        user_id = str(row[user]).strip()
        if not user_id:
            raise DataError(path, "empty user id", line=line)
        users.append(user_id)
        item_ids.append(item_id)
        times.append(parse_int(path, line, timestamp, row[timestamp]) if timestamp else len(times))
        ratings.append(parse_float(path, line, rating, row[rating]) if rating else float("nan"))
    if unknown:
        skipped[f"{path.name}: interactions with items not in the catalog"] = unknown
    if not users:
        raise DataError(path, "no interaction names an item of the catalog")
    return users, item_ids, times, ratings


def load_movielens_csv(folder: Path, name: str) -> Dataset:
    """ml-latest-small / ml-latest / ml-25m style: movies.csv, ratings.csv and optional tags.csv."""
    movies, ratings, tags_path = folder / "movies.csv", folder / "ratings.csv", folder / "tags.csv"
    tag_counts: dict[str, Counter[str]] = defaultdict(Counter)
    if tags_path.exists():
        for _, row in read_delimited(tags_path, required=("movieId", "tag")):
            tag_counts[row["movieId"].strip()][row["tag"].strip().lower()] += 1
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    for line, row in read_delimited(movies, required=("movieId", "title", "genres")):
        title = row["title"].strip()
        attributes: dict[str, AttributeValue] = {
            "genres": [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")}
        year = year_from_title(title)
        if year is not None:
            attributes["year"] = year
        item_id = row["movieId"].strip()
        if tag_counts.get(item_id):
            attributes["tags"] = [tag for tag, _ in tag_counts[item_id].most_common(8)]
        _add_item(items, lines, movies, line, Item(item_id, title, "", attributes))
    skipped: dict[str, int] = {}
    columns = _collect_interactions(read_delimited(ratings, required=("userId", "movieId", "rating",
                                                                         "timestamp")),
                                    ratings, items, user="userId", item="movieId", timestamp="timestamp",
                                    rating="rating", skipped=skipped)
    files = [p for p in (movies, ratings, tags_path) if p.exists()]
    return Dataset(name, items, interactions_frame(*columns), files, skipped, item_noun="movie")


def load_movielens_100k(folder: Path, name: str) -> Dataset:
    """ml-100k: pipe-separated Latin-1 u.item with 19 genre flags, tab-separated u.data."""
    genre_path, item_path, data_path = folder / "u.genre", folder / "u.item", folder / "u.data"
    genres: list[str] = []
    for line, row in read_delimited(genre_path, delimiter="|", encoding="latin-1", columns=("name", "index")):
        if parse_int(genre_path, line, "index", row["index"]) != len(genres):
            raise DataError(genre_path, "genre indices must run 0, 1, 2, ...", line=line)
        genres.append(row["name"])
    fixed = ["movie_id", "title", "release_date", "video_release_date", "imdb_url"]
    columns = fixed + [f"g{i}" for i in range(len(genres))]
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    for line, row in read_delimited(item_path, delimiter="|", encoding="latin-1", columns=columns):
        title = row["title"].strip()
        flags = [genres[i] for i in range(len(genres)) if row[f"g{i}"] == "1" and genres[i] != "unknown"]
        attributes: dict[str, AttributeValue] = {"genres": flags}
        year = year_from_title(title) or (int(row["release_date"][-4:]) if row["release_date"][-4:].isdigit()
                                          else None)
        if year is not None:
            attributes["year"] = year
        _add_item(items, lines, item_path, line, Item(row["movie_id"].strip(), title, "", attributes))
    skipped: dict[str, int] = {}
    rows = read_delimited(data_path, delimiter="\t", columns=("user", "item", "rating", "timestamp"))
    interaction_columns = _collect_interactions(rows, data_path, items, user="user", item="item",
                                                timestamp="timestamp", rating="rating", skipped=skipped)
    return Dataset(name, items, interactions_frame(*interaction_columns), [genre_path, item_path, data_path],
                   skipped, item_noun="movie")


def _lastfm_catalog(folder: Path, on_tag: Callable[[int, dict[str, Any]], None] | None = None,
                    dated: bool = False) -> tuple[dict[str, Item], list[Path]]:
    """The artists with their ten most used tags; `on_tag` also sees each row of user_taggedartists.dat."""
    artists, tags, tagged = (folder / n for n in ("artists.dat", "tags.dat", "user_taggedartists.dat"))
    tag_names = {row["tagID"]: row["tagValue"] for _, row in read_delimited(tags, delimiter="\t",
                                                                           required=("tagID", "tagValue"))}
    artist_tags: dict[str, Counter[str]] = defaultdict(Counter)
    if tagged.exists() or dated:
        required = ("userID", "artistID", "tagID", *(("day", "month", "year") if dated else ()))
        for line, row in read_delimited(tagged, delimiter="\t", required=required):
            artist_tags[row["artistID"]][tag_names.get(row["tagID"], "")] += 1
            if on_tag is not None:
                on_tag(line, row)
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    for line, row in read_delimited(artists, delimiter="\t", required=("id", "name")):
        counts = artist_tags.get(row["id"], Counter())
        top = [tag for tag, _ in counts.most_common(10) if tag]
        _add_item(items, lines, artists, line, Item(row["id"].strip(), row["name"].strip(), "", {"tags": top}))
    return items, [artists, tags, tagged]


def load_lastfm_hetrec(folder: Path, name: str) -> Dataset:
    """Last.fm HetRec 2011: artists with their most used tags; play counts as ratings, no timestamps.

    user_artists.dat has no time, so interactions keep file order (timestamp = row index) and the
    `loo` protocol's "last" item is the last in the file for that user: the highest artist ID, not a
    time order. `lastfm-hetrec2011-tagged` (`load_lastfm_tagged`) is the time-ordered view.
    """
    items, files = _lastfm_catalog(folder)
    plays = folder / "user_artists.dat"
    skipped: dict[str, int] = {}
    columns = _collect_interactions(read_delimited(plays, delimiter="\t", required=("userID", "artistID",
                                                                                    "weight")),
                                    plays, items, user="userID", item="artistID", timestamp=None,
                                    rating="weight", skipped=skipped)
    return Dataset(name, items, interactions_frame(*columns), [*files, plays], skipped, item_noun="artist",
                   timed=False)


def _tie_break(user: str, item: str) -> int:
    """A fixed pseudo-random second of the day, so that same-day items are in neither ID nor file order."""
    return zlib.crc32(f"{user}\t{item}".encode()) % 86_400


def load_lastfm_tagged(folder: Path, name: str) -> Dataset:
    """Last.fm HetRec 2011 as time-ordered sequences: each user's artists in the order the user first tagged them.

    HetRec dates only tag assignments (user_taggedartists.dat: day, month, year), not listening, so this
    is the time-ordered view of the dataset. One interaction per (user, artist): the timestamp is the first
    tagging day (UTC midnight) plus a fixed pseudo-random second (`_tie_break`), since a user often tags
    several artists on one day and the data has no time of day; the rating is the number of tags the user
    gave the artist.
    """
    tagged = folder / "user_taggedartists.dat"
    first: dict[tuple[str, str], int] = {}
    counts: Counter[tuple[str, str]] = Counter()

    def on_tag(line: int, row: dict[str, Any]) -> None:
        user, item = str(row["userID"]).strip(), str(row["artistID"]).strip()
        if not user or not item:
            raise DataError(tagged, "empty user or artist id", line=line)
        day, month, year = (parse_int(tagged, line, c, row[c]) for c in ("day", "month", "year"))
        try:
            stamp = int(datetime(year, month, day, tzinfo=UTC).timestamp())
        except ValueError as exc:
            raise DataError(tagged, f"not a date: {year}-{month}-{day} ({exc})", line=line) from None
        key = (user, item)
        first[key] = min(first.get(key, stamp), stamp)
        counts[key] += 1

    items, files = _lastfm_catalog(folder, on_tag, dated=True)
    unknown = [key for key in first if key[1] not in items]
    for key in unknown:
        del first[key]
    skipped = {f"{tagged.name}: users' artists not in the catalog": len(unknown)} if unknown else {}
    if not first:
        raise DataError(tagged, "no tag assignment names an artist of the catalog")
    keys = list(first)
    frame = interactions_frame([u for u, _ in keys], [i for _, i in keys],
                               [first[k] + _tie_break(*k) for k in keys], [float(counts[k]) for k in keys])
    return Dataset(name, items, frame, files, skipped, item_noun="artist")


def load_generic(spec: GenericFormat, name: str) -> Dataset:
    """A user's own files: the catalog columns and interaction columns are named in `spec`."""
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    required = [spec.id_column, spec.title_column, *spec.text_columns, *spec.attribute_columns]
    for line, row in read_table(spec.catalog, required=required, encoding=spec.encoding):
        attributes: dict[str, AttributeValue] = {}
        for column in spec.attribute_columns:
            value = row[column]
            if value is None or value == "":
                continue
            if isinstance(value, str) and spec.list_separator and spec.list_separator in value:
                attributes[column] = [part.strip() for part in value.split(spec.list_separator) if part.strip()]
            elif isinstance(value, list):
                attributes[column] = [str(part) for part in value]
            elif isinstance(value, (int, float, bool)):
                attributes[column] = value
            else:
                text = str(value).strip()
                attributes[column] = int(text) if text.lstrip("-").isdigit() else text
        description = " ".join(str(row[c]).strip() for c in spec.text_columns if row[c] not in (None, ""))
        title = str(row[spec.title_column] or "").strip()
        if not title:
            raise DataError(spec.catalog, f"empty {spec.title_column!r}", line=line)
        _add_item(items, lines, spec.catalog, line, Item(str(row[spec.id_column]).strip(), title, description,
                                                         attributes))
    timestamp = spec.timestamp_column or None
    notes: list[str] = []
    if timestamp is not None and "timestamp_column" not in spec.model_fields_set and \
            timestamp not in columns_of(spec.interactions, spec.encoding):
        timestamp = None  # the default column is simply not there: file order, as for Last.fm
    if timestamp is None:
        notes.append(f"{spec.interactions.name}: no timestamp column; file order stands in for time")
    required_i = [spec.user_column, spec.item_column, *([timestamp] if timestamp else [])]
    if spec.rating_column:
        required_i.append(spec.rating_column)
    skipped: dict[str, int] = {}
    columns = _collect_interactions(read_table(spec.interactions, required=required_i, encoding=spec.encoding),
                                    spec.interactions, items, user=spec.user_column, item=spec.item_column,
                                    timestamp=timestamp, rating=spec.rating_column,
                                    skipped=skipped)
    return Dataset(name, items, interactions_frame(*columns), [spec.catalog, spec.interactions], skipped,
                   item_noun=spec.item_noun, notes=notes, timed=timestamp is not None)


Detector = tuple[tuple[str, ...], Callable[[Path, str], Dataset]]

# Files whose presence identifies a format, checked in order.
FORMATS: dict[str, Detector] = {
    "movielens-csv": (("movies.csv", "ratings.csv"), load_movielens_csv),
    "movielens-100k": (("u.item", "u.data", "u.genre"), load_movielens_100k),
    "lastfm-hetrec2011": (("artists.dat", "user_artists.dat", "tags.dat"), load_lastfm_hetrec),
    "redial": (("movies_with_mentions.csv",), load_redial),
}


# Other views of a format's files, loaded by the name "<folder>-<view>" (e.g. lastfm-hetrec2011-tagged).
VIEWS: dict[str, dict[str, Callable[[Path, str], Dataset]]] = {
    "lastfm-hetrec2011": {"tagged": load_lastfm_tagged},
}


def detect_format(folder: Path) -> str:
    for format_name, (files, _) in FORMATS.items():
        if all((folder / f).exists() for f in files):
            return format_name
    if (folder / "dataset.toml").exists():
        return "generic"
    known = "; ".join(f"{k}: {', '.join(v[0])}" for k, v in FORMATS.items())
    raise DatasetNotFound(f"{folder}: no known dataset format (looked for {known}; or dataset.toml for the "
                          f"generic format)")


def resolve_dataset_folder(name_or_path: str, data_dir: Path) -> Path:
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate
    folder = data_dir / name_or_path
    if folder.is_dir():
        return folder
    available = []
    for path in sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []:
        views = [f"{path.name}-{v}" for v in VIEWS.get(_format_or_none(path) or "", {})]
        available.append(path.name + (f" (also {', '.join(views)})" if views else ""))
    raise DatasetNotFound(f"dataset {name_or_path!r} not found in {data_dir} (set RECAGENT_DATA_DIR or "
                          f"--data-dir; available: {', '.join(available) or 'none'}; "
                          f"'recagent data fetch movielens-small' downloads one)")


def _format_or_none(folder: Path) -> str | None:
    try:
        return detect_format(folder)
    except DatasetNotFound:
        return None


def _view(name_or_path: str, data_dir: Path) -> tuple[Path, str, Callable[[Path, str], Dataset]] | None:
    """A name "<dataset>-<view>" whose dataset folder exists and whose format has that view, or None."""
    base, dash, view = name_or_path.rpartition("-")
    if not dash or not base:
        return None
    for folder in (Path(base).expanduser(), data_dir / base):
        if folder.is_dir():
            loader = VIEWS.get(_format_or_none(folder) or "", {}).get(view)
            return (folder, view, loader) if loader else None
    return None


def load_dataset(name_or_path: str, data_dir: Path) -> Dataset:
    """Load a dataset by name (a folder under `data_dir`) or by folder path, detecting its format.

    A name "<dataset>-<view>" that is not a folder loads another view of that dataset's files (VIEWS).
    """
    try:
        folder = resolve_dataset_folder(name_or_path, data_dir)
    except DatasetNotFound:
        view = _view(name_or_path, data_dir)
        if view is None:
            raise
        folder, view_name, loader = view
        return loader(folder, f"{folder.name}-{view_name}")
    format_name = detect_format(folder)
    name = folder.name
    if format_name == "generic":
        import tomllib

        config_path = folder / "dataset.toml"
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise DataError(config_path, f"invalid TOML: {exc}") from None
        for key in ("catalog", "interactions"):
            if key in raw:
                raw[key] = folder / raw[key]
        try:
            spec = GenericFormat.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {'no such key' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in exc.errors())
            raise DataError(config_path, problems) from None
        return load_generic(spec, name)
    return FORMATS[format_name][1](folder, name)
