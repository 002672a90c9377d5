"""Every error recagent raises on purpose, in one hierarchy. Edges (the CLI, the HTTP API, the MCP
server) turn them into one message or status code by type; nothing inside matches on message text."""

from __future__ import annotations

from pathlib import Path


class RecagentError(Exception):
    """Base class for every error recagent raises on purpose."""


class InvalidRequest(RecagentError):
    """A request that cannot be served as asked: a bad value, filter or option (HTTP 400)."""


class NotFound(RecagentError):
    """Something a request names does not exist (HTTP 404)."""


class UnknownUser(NotFound):
    def __init__(self, user: str, namespace: str) -> None:
        self.user = user
        super().__init__(f"unknown user {user!r} in index {namespace!r}")


class UnknownItem(NotFound):
    def __init__(self, item: str) -> None:
        self.item = item
        super().__init__(f"unknown item {item!r}")


class ConversationNotFound(NotFound):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"no conversation {conversation_id!r}")


class CorruptConversation(ConversationNotFound):
    """A stored conversation that could not be read; it was moved to quarantine, so it is gone (404)."""

    def __init__(self, conversation_id: str, reason: str) -> None:
        self.conversation_id = conversation_id
        self.reason = reason
        NotFound.__init__(self, f"conversation {conversation_id!r} could not be read ({reason}); "
                                f"it was moved to quarantine")


class Conflict(RecagentError):
    """The request collides with work in progress, e.g. a turn already running in a conversation (409)."""


class Unavailable(RecagentError):
    """A part the request needs is down, full or read-only; retrying later may work (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class Overloaded(Unavailable):
    """Too many turns are queued; the request was refused before any work was done."""


class DataError(RecagentError):
    """Bad input data: names the file and, where it applies, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class DatasetNotFound(NotFound):
    """A dataset name or folder that cannot be found in the data folder."""


class IndexStateError(Unavailable):
    """The index is missing, unfinished or was built from other data."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=30)


class SettingsError(RecagentError):
    """A setting that does not exist or has a wrong value."""
