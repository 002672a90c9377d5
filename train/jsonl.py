"""Cached training examples as JSON lines, written atomically (a kill never leaves half a cache)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def write_examples(path: Path, examples: Sequence[Any]) -> None:
    """One dataclass instance per line; the file appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(asdict(example)) + "\n")
    partial.replace(path)


def read_examples(path: Path, make: Callable[[dict[str, Any]], T]) -> list[T]:
    with path.open(encoding="utf-8") as handle:
        return [make(json.loads(line)) for line in handle if line.strip()]
