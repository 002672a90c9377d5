"""Loaders on the real datasets, and bad input: each error names the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataError, DatasetNotFound
from index.loaders import detect_format, load_dataset


def test_movielens_latest_small_counts(data_dir: Path) -> None:
    dataset = load_dataset("ml-latest-small", data_dir)
    assert len(dataset.items) == 9742
    assert len(dataset.interactions) == 100836
    assert dataset.interactions["user"].nunique() == 610
    toy = dataset.items["1"]
    assert toy.title == "Toy Story (1995)"
    assert toy.attributes["year"] == 1995
    assert "Animation" in toy.attributes["genres"]
    assert dataset.skipped == {}
    assert dataset.timed  # real times (seconds), which the linear ranker's time features read


def test_movielens_100k_is_read_as_latin1(data_dir: Path) -> None:
    dataset = load_dataset("ml-100k", data_dir)
    assert detect_format(data_dir / "ml-100k") == "movielens-100k"
    assert len(dataset.items) == 1682 and len(dataset.interactions) == 100000
    assert dataset.items["543"].title == "Misérables, Les (1995)"
    assert dataset.items["1"].attributes["genres"] == ["Animation", "Children's", "Comedy"]


def test_lastfm_artists_with_tags(data_dir: Path) -> None:
    dataset = load_dataset("lastfm-hetrec2011", data_dir)
    assert len(dataset.items) == 17632 and len(dataset.interactions) == 92834
    assert dataset.interactions["user"].nunique() == 1892
    tagged = [item for item in dataset.items.values() if item.attributes["tags"]]
    assert len(tagged) > 10000
    assert not dataset.timed  # file order stands in for time: no item has a date


def test_lastfm_tagged_view_is_ordered_by_first_tagging_day(data_dir: Path) -> None:
    dataset = load_dataset("lastfm-hetrec2011-tagged", data_dir)
    assert dataset.name == "lastfm-hetrec2011-tagged" and dataset.item_noun == "artist" and dataset.timed
    frame = dataset.interactions
    assert len(frame) == 70297 and frame["user"].nunique() == 1891  # one row per (user, artist) tagged
    assert dataset.skipped == {"user_taggedartists.dat: users' artists not in the catalog": 767}  # of 71,064
    assert not frame.duplicated(["user", "item"]).any()
    # user 2 first tagged artist 52 on 2009-04-01: that day's UTC midnight plus a tie-break under a day
    row = frame[(frame["user"] == "2") & (frame["item"] == "52")].iloc[0]
    assert 1238544000 <= row["timestamp"] < 1238544000 + 86400
    assert row["rating"] == 5  # tags user 2 gave artist 52
    # within one day the order is neither by artist ID nor the file's: the tie-break mixes it
    same_day = frame.assign(day=frame["timestamp"] // 86400).groupby(["user", "day"])
    orders = [group.sort_values("timestamp")["item"].astype(int).is_monotonic_increasing
              for _, group in same_day if len(group) >= 4]
    assert len(orders) > 1000 and sum(orders) < 0.5 * len(orders)
    assert load_dataset("lastfm-hetrec2011-tagged", data_dir).interactions.equals(frame)  # fixed


def test_lastfm_tagged_bad_date_names_line(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "lastfm"
    folder.mkdir()
    for name in ("artists.dat", "tags.dat", "user_artists.dat"):
        (folder / name).write_bytes((data_dir / "lastfm-hetrec2011" / name).read_bytes())
    (folder / "user_taggedartists.dat").write_text("userID\tartistID\ttagID\tday\tmonth\tyear\n"
                                                   "2\t52\t13\t1\t4\t2009\n2\t53\t13\t31\t2\t2009\n")
    assert len(load_dataset(str(folder), tmp_path).interactions) == 92834  # the listening view ignores dates
    with pytest.raises(DataError, match=r"user_taggedartists.dat:3: not a date: 2009-2-31"):
        load_dataset(str(folder) + "-tagged", tmp_path)
    (folder / "user_taggedartists.dat").write_text("userID\tartistID\ttagID\n2\t52\t13\n")
    with pytest.raises(DataError, match=r"user_taggedartists.dat:1: missing column\(s\) day, month, year"):
        load_dataset(str(folder) + "-tagged", tmp_path)


def test_unknown_dataset_lists_available(data_dir: Path) -> None:
    with pytest.raises(DatasetNotFound, match="ml-latest-small") as info:
        load_dataset("no-such-dataset", data_dir)
    assert "lastfm-hetrec2011 (also lastfm-hetrec2011-tagged)" in str(info.value)
    with pytest.raises(DatasetNotFound):
        load_dataset("ml-latest-small-tagged", data_dir)  # a view only where the format has it


def _movielens(folder: Path, movies: str, ratings: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(movies, encoding="utf-8")
    (folder / "ratings.csv").write_text(ratings, encoding="utf-8")
    return folder


MOVIES = "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Heat (1995),Action\n"
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,3.0,200\n"


def test_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", MOVIES, RATINGS + "2,1,4.0\n")
    with pytest.raises(DataError) as info:
        load_dataset(str(folder), tmp_path)
    assert info.value.path.name == "ratings.csv" and info.value.line == 4
    assert "ratings.csv:4" in str(info.value) and "expected 4 fields" in str(info.value)


def test_bad_number_names_line(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", MOVIES, RATINGS + "2,1,four,300\n")
    with pytest.raises(DataError, match=r"ratings.csv:4: column 'rating': 'four' is not a number"):
        load_dataset(str(folder), tmp_path)


def test_missing_column(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", "movieId,name,genres\n1,x,y\n", RATINGS)
    with pytest.raises(DataError, match=r"movies.csv:1: missing column\(s\) title"):
        load_dataset(str(folder), tmp_path)


def test_duplicate_item_id_names_both_lines(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", MOVIES + "1,Toy Story again (1995),Comedy\n", RATINGS)
    with pytest.raises(DataError, match=r"movies.csv:4: duplicate item id '1' \(first on line 2\)"):
        load_dataset(str(folder), tmp_path)


def test_unknown_items_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "ok", MOVIES, RATINGS + "2,999,4.0,300\n3,998,4.0,300\n")
    dataset = load_dataset(str(folder), tmp_path)
    assert len(dataset.interactions) == 2
    assert list(dataset.skipped.values()) == [2]


def test_empty_file(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", MOVIES, "")
    with pytest.raises(DataError, match=r"ratings.csv: file is empty"):
        load_dataset(str(folder), tmp_path)
    folder = _movielens(tmp_path / "bad2", MOVIES, "userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match=r"ratings.csv: file has no data rows"):
        load_dataset(str(folder), tmp_path)


def test_wrong_encoding_names_line(tmp_path: Path) -> None:
    folder = _movielens(tmp_path / "bad", MOVIES, RATINGS)
    (folder / "movies.csv").write_bytes(MOVIES.encode() + "3,Misérables (1995),Drama\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"movies.csv:4: not valid utf-8 text"):
        load_dataset(str(folder), tmp_path)


def _generic(folder: Path, catalog_name: str, extra: str = "") -> Path:
    folder.mkdir(parents=True)
    (folder / "dataset.toml").write_text(
        f'catalog = "{catalog_name}"\ninteractions = "events.csv"\nid_column = "sku"\ntitle_column = "name"\n'
        f'text_columns = ["blurb"]\nattribute_columns = ["color", "size"]\nrating_column = "stars"\n{extra}',
        encoding="utf-8")
    (folder / "events.csv").write_text("user_id,item_id,timestamp,stars\nu1,a,1,5\nu1,b,2,4\nu2,a,3,3\n",
                                       encoding="utf-8")
    return folder


def test_generic_csv_jsonl_parquet(tmp_path: Path) -> None:
    rows = [{"sku": "a", "name": "Red shoe", "blurb": "a shoe", "color": "red|crimson", "size": 42},
            {"sku": "b", "name": "Blue hat", "blurb": "a hat", "color": "blue", "size": 3}]
    csv_dir = _generic(tmp_path / "csv", "items.csv")
    (csv_dir / "items.csv").write_text("sku,name,blurb,color,size\na,Red shoe,a shoe,red|crimson,42\n"
                                       "b,Blue hat,a hat,blue,3\n", encoding="utf-8")
    jsonl_dir = _generic(tmp_path / "jsonl", "items.jsonl")
    (jsonl_dir / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    parquet_dir = _generic(tmp_path / "parquet", "items.parquet")
    pq.write_table(pa.Table.from_pylist(rows), parquet_dir / "items.parquet")
    for folder in (csv_dir, jsonl_dir, parquet_dir):
        dataset = load_dataset(str(folder), tmp_path)
        assert dataset.items["a"].attributes == {"color": ["red", "crimson"], "size": 42}
        assert dataset.items["b"].description == "a hat"
        assert dataset.interactions["rating"].tolist() == [5.0, 4.0, 3.0]


def test_generic_bad_json_line_and_typo_in_config(tmp_path: Path) -> None:
    folder = _generic(tmp_path / "g", "items.jsonl")
    (folder / "items.jsonl").write_text('{"sku": "a", "name": "x", "blurb": "", "color": "r", "size": 1}\n'
                                        '{"sku": "b", "name": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"items.jsonl:2: invalid JSON"):
        load_dataset(str(folder), tmp_path)
    folder = _generic(tmp_path / "typo", "items.jsonl", extra='titel_column = "x"\n')
    with pytest.raises(DataError, match=r"dataset.toml.*titel_column"):
        load_dataset(str(folder), tmp_path)


def test_generic_without_timestamps_uses_file_order(tmp_path: Path) -> None:
    """No timestamp column (or timestamp_column = ""): file order stands in for time, as for Last.fm; a
    column the user names explicitly must exist."""
    with_times = "user_id,item_id,timestamp,stars\nu1,b,9,5\nu1,a,1,4\nu2,a,3,3\n"
    for extra, events in [("", "user_id,item_id,stars\nu1,b,5\nu1,a,4\nu2,a,3\n"),
                          ('timestamp_column = ""\n', with_times)]:
        folder = _generic(tmp_path / f"g{len(extra)}", "items.csv", extra=extra)
        (folder / "items.csv").write_text("sku,name,blurb,color,size\na,A,x,red,1\nb,B,y,blue,2\n", encoding="utf-8")
        (folder / "events.csv").write_text(events, encoding="utf-8")
        dataset = load_dataset(str(folder), tmp_path)
        assert dataset.interactions["timestamp"].tolist() == [0, 1, 2]
        assert dataset.interactions["item"].tolist() == ["b", "a", "a"]
        assert any("file order" in note for note in dataset.notes) and not dataset.timed
    folder = _generic(tmp_path / "named", "items.csv", extra='timestamp_column = "when"\n')
    (folder / "items.csv").write_text("sku,name,blurb,color,size\na,A,x,red,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"events.csv:1: missing column\(s\) when; header has user_id"):
        load_dataset(str(folder), tmp_path)
