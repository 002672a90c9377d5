"""The manifest that ships with an adapter: what it was trained from and how to train it again."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of the adapter (the manifest itself left out)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def base_model_record(model_folder: str, model_setting: str) -> dict[str, str]:
    weights = Path(model_folder) / "model.safetensors"
    return {"setting": model_setting, "name": Path(model_folder).name,
            "sha256": sha256_file(weights) if weights.exists() else "unknown"}


def portable_path(path: Path, data_dir: Path) -> str:
    """A path as a manifest records it: relative to the data folder (or else to the working folder), never a
    machine's own absolute path; a file outside both is recorded by its name."""
    resolved = path.resolve()
    for base in (data_dir.resolve(), Path.cwd().resolve()):
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return path.name


def _absolute_paths(value: Any, where: str = "") -> list[str]:
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _absolute_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _absolute_paths(v, f"{where}[{i}]")]
    return [where] if isinstance(value, str) and value.startswith("/") else []


def write_manifest(folder: Path, record: dict[str, Any]) -> Path:
    """Write the manifest; an absolute path anywhere in the record is an error (manifests ship in the repository
    and must read the same on every machine)."""
    from eval.harness import git_commit

    absolute = _absolute_paths(record)
    if absolute:
        raise ValueError(f"manifest for {folder}: absolute paths in {', '.join(absolute)}; record them with "
                         "portable_path")
    manifest = {**record, "files": adapter_files(folder), "git_commit": git_commit(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": record.get("command") or shlex.join(["recagent", *sys.argv[1:]])}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))


def verify(folder: Path) -> list[str]:
    """Files whose hash differs from the manifest's (empty when the adapter is intact)."""
    recorded = read_manifest(folder)["files"]
    actual = adapter_files(folder)
    return sorted(name for name in set(recorded) | set(actual) if recorded.get(name) != actual.get(name))
