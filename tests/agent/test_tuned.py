"""Tuned settings: the shipped files in models/tuned, the user's own tuning over them, explicit settings over all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.settings import Settings
from agent.tuned import SHIPPED_TUNED, save_tuned, with_tuned

SHIPPED_FILES = sorted(SHIPPED_TUNED.glob("*.json"))


def _write(folder: Path, dataset: str, values: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dataset}.json").write_text(json.dumps({"dataset": dataset, "values": values}), encoding="utf-8")


def test_own_family_replaces_the_shipped_one_and_the_rest_stays(tmp_path: Path) -> None:
    settings = Settings(tuned_dir=tmp_path / "own", shipped_tuned_dir=tmp_path / "shipped")
    _write(tmp_path / "shipped", "shop", {"retrieval.fusion_weights": {"text": 1.0}, "retrieval.rrf_k": 30.0,
                                          "retrieval.linear_weights": {"collab.score": 2.0}})
    tuned, applied = with_tuned(settings, "shop")
    assert tuned.retrieval.fusion_weights == {"text": 1.0} and tuned.retrieval.rrf_k == 30.0
    assert tuned.retrieval.linear_weights == {"collab.score": 2.0}

    save_tuned(settings, "shop", {"retrieval.fusion_weights": {"collab": 1.0}}, {"protocol": "loo"})
    tuned, applied = with_tuned(settings, "shop")
    # the user's fusion family replaces the shipped one whole: the shipped rrf_k does not leak into it
    assert tuned.retrieval.fusion_weights == {"collab": 1.0}
    assert tuned.retrieval.rrf_k == Settings().retrieval.rrf_k
    assert tuned.retrieval.linear_weights == {"collab.score": 2.0}
    assert set(applied) == {"retrieval.fusion_weights", "retrieval.linear_weights"}


def test_an_explicit_setting_wins_over_shipped_values(tmp_path: Path) -> None:
    _write(tmp_path / "shipped", "shop", {"retrieval.fusion_weights": {"text": 1.0}})
    settings = Settings.model_validate({"tuned_dir": tmp_path / "own", "shipped_tuned_dir": tmp_path / "shipped",
                                        "retrieval": {"fusion_weights": {"popularity": 1.0}}})
    tuned, applied = with_tuned(settings, "shop")
    assert tuned.retrieval.fusion_weights == {"popularity": 1.0} and applied == {}


def test_a_shipped_file_with_a_bad_value_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "shipped", "shop", {"retrieval.linear_weights": {"no.such.feature": 1.0}})
    with pytest.raises(ValueError, match=r"no\.such\.feature"):
        with_tuned(Settings(tuned_dir=tmp_path / "own", shipped_tuned_dir=tmp_path / "shipped"), "shop")


def test_the_repository_ships_tuned_files_for_its_datasets() -> None:
    names = {p.stem for p in SHIPPED_FILES}
    assert {"ml-latest-small", "redial", "lastfm-hetrec2011", "lastfm-hetrec2011-tagged"} <= names


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.name)
def test_each_shipped_file_says_how_it_was_made(path: Path) -> None:
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["command"].startswith("recagent tune ")
    assert len(payload["data_hash"]) >= 12
    assert payload["values"] and not any(str(v).startswith("/") for v in json.dumps(payload).split('"'))
    _, applied = with_tuned(Settings(tuned_dir=Path("/nonexistent")), path.stem)
    assert set(applied) == set(payload["values"])
