"""ReDial (Li et al. 2018): conversational recommendation dialogues and their movie list.

A ReDial folder holds `movies_with_mentions.csv` (movieId, movieName, nbMentions) and dialogue files
(`train_data*.jsonl`, `valid_data*.jsonl`, `test_data*.jsonl`), one JSON object per dialogue; in the
messages a movie appears as `@<movieId>`. The catalog is the movie list (titles with their year). Its
interactions are the *training* dialogues only: each dialogue is a user whose items are the movies
mentioned in it, in order of first mention (co-mentions are what ReDial can teach a collaborative model).
`nbMentions` is not used: it counts mentions in every split, the test split included.

Consecutive messages of one sender form one turn, as in CRSLab's processing that He et al. (2023)
evaluate on. The seeker is the initiator; the respondent recommends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import DataError
from index.dataset import AttributeValue, Dataset, Item, interactions_frame, year_from_title
from index.readers import read_delimited, read_jsonl

MOVIE_REF = re.compile(r"@(\d+)")
SPLIT_FILES = {"train": "train_data*.jsonl", "validation": "valid_data*.jsonl", "test": "test_data*.jsonl"}
Role = Literal["seeker", "recommender"]


@dataclass(frozen=True)
class DialogueTurn:
    role: Role
    text: str  # raw text, movies as @id
    movies: tuple[str, ...]  # movie ids in order of appearance, each once


@dataclass(frozen=True)
class Dialogue:
    id: str
    turns: tuple[DialogueTurn, ...]
    titles: dict[str, str] = field(default_factory=dict)  # the dialogue's own movieMentions

    def movies(self) -> list[str]:
        """Every movie mentioned, in order of first mention."""
        return list(dict.fromkeys(m for t in self.turns for m in t.movies))


def clean_title(title: str) -> str:
    return re.sub(r"\s+", " ", title).strip()


def read_movies(path: Path) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for line, row in read_delimited(path, required=("movieId", "movieName")):
        item_id = row["movieId"].strip()
        if item_id in items:
            raise DataError(path, f"duplicate movieId {item_id!r}", line=line)
        title = clean_title(row["movieName"])
        attributes: dict[str, AttributeValue] = {}
        year = year_from_title(title)
        if year is not None:
            attributes["year"] = year
        items[item_id] = Item(item_id, title, "", attributes)
    return items


def movies_in(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(MOVIE_REF.findall(text)))


def parse_dialogue(record: dict[str, object], path: Path, line: int) -> Dialogue:
    try:
        seeker = record["initiatorWorkerId"]
        messages = record["messages"]
        assert isinstance(messages, list)
        turns: list[DialogueTurn] = []
        for message in messages:
            role: Role = "seeker" if message["senderWorkerId"] == seeker else "recommender"
            text = str(message["text"])
            if turns and turns[-1].role == role:
                merged = f"{turns[-1].text} {text}"
                turns[-1] = DialogueTurn(role, merged, movies_in(merged))
            else:
                turns.append(DialogueTurn(role, text, movies_in(text)))
        mentions = record.get("movieMentions") or {}
        titles = {str(k): clean_title(str(v)) for k, v in mentions.items()} if isinstance(mentions, dict) else {}
        return Dialogue(str(record["conversationId"]), tuple(turns), titles)
    except (KeyError, TypeError, AssertionError) as exc:
        raise DataError(path, f"not a ReDial dialogue ({exc!r})", line=line) from None


def read_dialogues(path: Path) -> list[Dialogue]:
    return [parse_dialogue(row, path, line) for line, row in read_jsonl(path, required=("messages",))]


def split_files(folder: Path, split: str) -> list[Path]:
    """The dialogue files of a split ('train', 'validation' or 'test') in the folder, sorted."""
    return sorted(folder.glob(SPLIT_FILES[split]))


def render(text: str, titles: dict[str, str]) -> str:
    """The text with each @id replaced by the movie's title (the id stays when the title is unknown)."""
    return MOVIE_REF.sub(lambda m: titles.get(m.group(1), m.group(0)), text)


def dialogue_interactions(dialogues: list[Dialogue], items: dict[str, Item]) -> tuple[list[str], list[str],
                                                                                       list[int], list[float]]:
    users: list[str] = []
    item_ids: list[str] = []
    times: list[int] = []
    for dialogue in dialogues:
        seen: set[str] = set()
        for turn_index, turn in enumerate(dialogue.turns):
            for movie in turn.movies:
                if movie in items and movie not in seen:
                    seen.add(movie)
                    users.append(f"dialogue-{dialogue.id}")
                    item_ids.append(movie)
                    times.append(turn_index)
    return users, item_ids, times, [float("nan")] * len(users)


def load_redial(folder: Path, name: str) -> Dataset:
    movies = folder / "movies_with_mentions.csv"
    items = read_movies(movies)
    train = split_files(folder, "train")
    if not train:
        raise DataError(folder / SPLIT_FILES["train"], "no training dialogues (train_data*.jsonl) in the folder")
    dialogues = [d for path in train for d in read_dialogues(path)]
    columns = dialogue_interactions(dialogues, items)
    if not columns[0]:
        raise DataError(train[0], "no dialogue mentions a movie of the catalog")
    return Dataset(name, items, interactions_frame(*columns), [movies, *train], item_noun="movie",
                   notes=[f"{len(dialogues)} training dialogues as users (movies mentioned, in order)"], timed=False)


def write_dialogues(dialogues: list[dict[str, object]], path: Path) -> Path:
    """Write ReDial records (dicts) as JSONL, e.g. a hand-made file for `eval --dialogues`."""
    path.write_text("".join(json.dumps(d) + "\n" for d in dialogues), encoding="utf-8")
    return path
