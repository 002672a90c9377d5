"""The shipped manifests read the same on every machine: no absolute paths, and each names the command that made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.manifest import portable_path, write_manifest

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(ROOT.glob("models/**/manifest.json"))


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_there_are_shipped_manifests() -> None:
    assert len(MANIFESTS) >= 3


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_manifest_has_no_machine_paths(path: Path) -> None:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    absolute = [s for s in _strings(manifest) if s.startswith(("/", "~")) or s[1:3] == ":\\"]
    assert absolute == []
    assert str(manifest["command"]).startswith("recagent ")


def test_portable_path_is_relative_to_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "redial").mkdir(parents=True)
    inside = data / "redial" / "train.jsonl"
    assert portable_path(inside, data) == "redial/train.jsonl"
    assert portable_path(Path("/somewhere/else/dialogues.jsonl"), data) == "dialogues.jsonl"


def test_write_manifest_refuses_an_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dialogues"):
        write_manifest(tmp_path, {"task": "reply", "dialogues": ["/home/me/data/redial/train.jsonl"]})
    assert not (tmp_path / "manifest.json").exists()
