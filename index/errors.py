"""Errors raised while reading data or building the index; each names where the problem is."""

from __future__ import annotations

from pathlib import Path


class RecagentError(Exception):
    """Base class for every error recagent raises on purpose."""


class DataError(RecagentError):
    """Bad input data: names the file and, where it applies, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class DatasetNotFound(RecagentError):
    """A dataset name or folder that cannot be found in the data folder."""


class IndexStateError(RecagentError):
    """The index is missing, unfinished or was built from other data."""
