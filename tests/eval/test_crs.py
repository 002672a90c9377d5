"""ReDial: the loader, the title mapping to MovieLens, and He et al.'s protocol on hand-checked dialogues,
through the real conversational agent and the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import Settings
from conftest import make_settings
from eval.crs import CrsCase, CrsOutput, crs_cases, crs_metrics, hits, replay
from index.config import TransferConfig
from index.dataset import Item
from index.loaders import load_dataset
from index.redial import load_redial, read_dialogues, render, write_dialogues
from index.transfer import map_titles, title_keys, with_transfer

MOVIES = {"1": "The Matrix (1999)", "2": "Toy Story (1995)", "3": "Heat (1995)", "4": "Se7en (1995)",
          "5": "Fargo (1996)", "6": "Alien (1979)", "7": "Aliens (1986)", "8": "Jaws (1975)",
          "9": "Casino (1995)", "10": "Babe (1995)"}


def dialogue(conversation: str, messages: list[tuple[str, str]]) -> dict[str, object]:
    """A ReDial record; messages are (sender 's' seeker or 'r' recommender, text)."""
    return {"conversationId": conversation, "initiatorWorkerId": 1, "respondentWorkerId": 2,
            "movieMentions": {}, "initiatorQuestions": {}, "respondentQuestions": {},
            "messages": [{"timeOffset": n, "text": text, "senderWorkerId": 1 if who == "s" else 2, "messageId": n}
                         for n, (who, text) in enumerate(messages)]}


HAND_CHECKED = [
    # turns: 0 seeker (two messages merged), 1 recommender [3] (nothing earlier), 2 seeker, 3 recommender [5, 1]
    # (1 was mentioned earlier: not a new item), 4 seeker, 5 recommender without movies (not scored)
    dialogue("d1", [("s", "Hi! I loved @1"), ("s", "and @2 too"), ("r", "Have you seen @3 ?"),
                    ("s", "No. I hated @4 though"), ("r", "Then try @5 or watch @1 again"), ("s", "thanks"),
                    ("r", "bye")]),
    # the recommender opens: turn 0 is scored with an empty dialogue; turn 2 repeats 6 only
    dialogue("d2", [("r", "Do you like @6 ?"), ("s", "Yes, I liked @6 and @7"), ("r", "Then @6 is for you")]),
]


@pytest.fixture(scope="module")
def redial_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("redial-data")
    folder = root / "redial-small"
    folder.mkdir()
    lines = ["movieId,movieName,nbMentions"] + [f'{i},"{t}",1' for i, t in MOVIES.items()]
    (folder / "movies_with_mentions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    train = [dialogue(f"t{n}", [("s", f"I loved @{a}"), ("r", f"try @{b}"), ("s", f"and @{c}?")])
             for n, (a, b, c) in enumerate([(1, 3, 4), (2, 10, 8), (3, 9, 5), (6, 7, 8), (1, 4, 5), (2, 10, 6)])]
    write_dialogues(train, folder / "train_data_sample.jsonl")
    write_dialogues(HAND_CHECKED, folder / "valid_data_sample.jsonl")
    return root


def test_loader_merges_turns_and_reads_the_catalog(redial_dir: Path) -> None:
    d1, d2 = read_dialogues(redial_dir / "redial-small" / "valid_data_sample.jsonl")
    assert [t.role for t in d1.turns] == ["seeker", "recommender", "seeker", "recommender", "seeker", "recommender"]
    assert d1.turns[0].text == "Hi! I loved @1 and @2 too" and d1.turns[0].movies == ("1", "2")
    assert d1.turns[3].movies == ("5", "1") and d1.movies() == ["1", "2", "3", "4", "5"]
    assert render(d1.turns[3].text, MOVIES) == "Then try Fargo (1996) or watch The Matrix (1999) again"
    data = load_redial(redial_dir / "redial-small", "redial-small")
    assert len(data.items) == 10 and data.items["1"].attributes == {"year": 1999}
    first = data.interactions[data.interactions["user"] == "dialogue-t0"]
    assert list(first["item"]) == ["1", "3", "4"] and list(first["timestamp"]) == [0, 1, 2]
    assert not data.timed  # turn order stands in for time: no movie is dated by it
    assert d2.turns[0].role == "recommender"


def test_transfer_keeps_a_dataset_timed_only_with_timed_interactions(redial_dir: Path, small_data_dir: Path) -> None:
    movies = load_dataset("movies-small", small_data_dir)
    turns = load_redial(redial_dir / "redial-small", "redial-small")
    merged, _ = with_transfer(movies, turns, TransferConfig(source="redial-small", mode="merge"))
    separate, views = with_transfer(movies, turns, TransferConfig(source="redial-small", mode="separate"))
    attributes_only, _ = with_transfer(movies, turns, TransferConfig(source="redial-small", mode="merge",
                                                                      interactions=False))
    # turn numbers merged into real times would date nothing right; kept apart, the movies stay dated
    assert (merged.timed, separate.timed, attributes_only.timed) == (False, True, True)
    assert not views["redial-small"].timed
    assert not with_transfer(turns, movies, TransferConfig(source="movies-small", mode="merge"))[0].timed


def test_cases_targets_and_new_items(redial_dir: Path) -> None:
    d1, d2 = read_dialogues(redial_dir / "redial-small" / "valid_data_sample.jsonl")
    cases = crs_cases(d1, lambda m: True)
    assert [(c.turn, c.targets, c.new_targets) for c in cases] == [(1, ("3",), ("3",)), (3, ("5", "1"), ("5",))]
    assert cases[1].earlier == {"1", "2", "3", "4"}
    second = crs_cases(d2, lambda m: True)
    assert [(c.turn, c.targets, c.new_targets) for c in second] == [(0, ("6",), ("6",)), (2, ("6",), ())]
    assert crs_cases(d1, lambda m: m != "3")[0].targets == ("5", "1")  # movies outside the catalog are not scored


def test_scoring_per_target_in_both_variants() -> None:
    case = CrsCase("d", 3, ("5", "1"), frozenset({"1", "2"}))
    output = CrsOutput(case, ["1", "9", "5", "8"], 0.0, False)
    assert hits(output, "all", 1) == [0.0, 1.0] and hits(output, "all", 3) == [1.0, 1.0]
    assert hits(output, "new_items", 2) == [1.0]  # "1" was seen: removed, so "5" moves up to rank 2
    metrics = crs_metrics([output], "all", bootstrap=50)
    assert metrics["recall@1"]["value"] == 0.5 and metrics["recall@5"]["value"] == 1.0
    assert metrics["recall@1"]["se"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def redial_settings(redial_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(redial_dir, tmp_path_factory.mktemp("redial-chroma"), dataset="redial-small",
                         **{"data.transfer": {}, "tuned_dir": tmp_path_factory.mktemp("tuned")})


def test_replay_runs_the_conversation_agent(redial_settings: Settings, embedder: object) -> None:
    from agent.assemble import build_agent, index_dataset
    from index.loaders import load_dataset

    index_dataset(redial_settings, load_dataset("redial-small", redial_settings.data.data_dir), embedder,
                  progress=False)  # type: ignore[arg-type]
    agent = build_agent(redial_settings, "redial-small", llm=None, embedder=embedder)  # type: ignore[arg-type]
    d1 = read_dialogues(redial_settings.data.data_dir / "redial-small" / "valid_data_sample.jsonl")[0]
    outputs = replay(agent.conversations, d1, MOVIES, depth=10)
    assert [o.case.turn for o in outputs] == [1, 3]
    # the seeker wrote The Matrix and Toy Story: the agent's state took them as mentioned and leaves them out
    assert not {"1", "2"} & set(outputs[0].ranked) and len(outputs[0].ranked) == 8
    assert "4" not in outputs[1].ranked  # disliked ("I hated Se7en") and mentioned
    assert "3" not in outputs[1].ranked  # the recommender's earlier suggestion is context now, not offered again


def test_crs_command_on_a_dialogue_file(redial_dir: Path, redial_settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "RECAGENT_DATA_DIR": str(redial_dir), "RECAGENT_RUNS_DIR": str(tmp_path / "runs"),
           "RECAGENT_DATA__TRANSFER": "{}", "RECAGENT_TUNED_DIR": str(tmp_path / "tuned")}
    file = redial_dir / "redial-small" / "valid_data_sample.jsonl"
    command = [sys.executable, "-m", "app.cli", "eval", "--dataset", "redial-small", "--protocol", "crs", "--split",
               "valid", "--format", "json", "--quiet", "--dialogues", str(file), "--chroma-path",
               str(redial_settings.index.path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["protocol"], result["split"], result["turns"], result["targets"], result["targets_new_items"]) == (
        "crs", "validation", 4, 5, 3)
    assert set(result["metrics"]) == {"recall@1", "recall@5", "recall@10", "recall@20"}
    assert all({"value", "se", "ci95"} <= set(v) for v in result["metrics_new_items"].values())
    folder = Path(result["saved_to"]).parent
    rows = [json.loads(line) for line in (folder / "rows.jsonl").read_text().splitlines()]
    assert [(r["dialogue"], r["turn"], r["targets"]) for r in rows] == [
        ("d1", 1, ["3"]), ("d1", 3, ["5", "1"]), ("d2", 0, ["6"]), ("d2", 2, ["6"])]
    assert {"report.html", "summary.md", "settings.json", "prompts.json", "units.jsonl"} <= {
        p.name for p in folder.iterdir()}


def test_title_mapping() -> None:
    assert title_keys("Matrix, The (1999)") == ["matrix"] == title_keys("The Matrix (1999)")
    assert title_keys("Seven (a.k.a. Se7en) (1995)") == ["seven", "se7en"]
    source = {"m1": Item("m1", "Matrix, The (1999)"), "m2": Item("m2", "Seven (a.k.a. Se7en) (1995)"),
              "m3": Item("m3", "Heat (1995)"), "m4": Item("m4", "Heat (1972)"), "m5": Item("m5", "Alien (1979)")}
    target = {"1": Item("1", "The Matrix (1999)"), "4": Item("4", "Se7en (1995)"), "3": Item("3", "Heat (1996)"),
              "6": Item("6", "Alien"), "8": Item("8", "Jaws (1975)")}
    mapping = map_titles(source, target)
    assert mapping.pairs == {"1": "m1", "4": "m2", "3": "m3", "6": "m5"}
    assert (mapping.exact, mapping.near_year, mapping.no_year) == (2, 1, 1)
