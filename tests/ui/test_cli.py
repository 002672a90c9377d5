"""The recagent command end to end on a small real index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.settings import Settings
from app.cli import main


def _flags(settings: Settings) -> list[str]:
    return ["--data-dir", str(settings.data.data_dir), "--dataset", "movies-small",
            "--chroma-path", str(settings.index.path)]


def test_recommend_prints_ranked_titles(small_index: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", *_flags(small_index), "--user", "1", "--k", "3",
                 "--filter", '{"genres": "Action"}']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.")


def test_rebuild_reports_nothing_embedded(small_index: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "build", *_flags(small_index), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["embedded"] == 0 and report["unchanged"] == 300


def test_clear_errors(small_index: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", *_flags(small_index), "--filter", "{not json"]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["recommend", "--data-dir", str(small_index.data.data_dir), "--dataset", "movies-small",
                 "--chroma-path", str(tmp_path / "empty")]) == 2
    assert "run 'recagent index build'" in capsys.readouterr().err
    assert main(["index", "build", "--data-dir", str(tmp_path), "--dataset", "nope"]) == 2
    assert "not found" in capsys.readouterr().err
