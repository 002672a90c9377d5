"""The conversation stores on real databases: SQLite in a temporary file and PostgreSQL in a cluster the
session starts. The same contract for both; then the faults the old file store had (a corrupt row, a
read-only database) and the limits (turns, conversations, age)."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.conversations import ConversationsConfig, ConversationStore, Turn, open_conversation_store
from agent.conversations.sql import SQLConversationStore
from conftest import REPO
from core.errors import Conflict, ConversationNotFound, CorruptConversation, DataError, SettingsError, Unavailable


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def open_store(url: str, scope: str | None = None, **limits: object) -> SQLConversationStore:
    store = open_conversation_store(ConversationsConfig(url=url, **limits), scope or uuid.uuid4().hex)
    assert isinstance(store, SQLConversationStore)
    return store


@pytest.fixture()
def store(url: str) -> Iterator[SQLConversationStore]:
    opened = open_store(url)
    yield opened
    opened.close()


def test_copies_saves_and_deletes(url: str) -> None:
    scope = uuid.uuid4().hex
    store = open_store(url, scope)
    state = store.create(user="1")
    copy = store.get(state.id)
    copy.liked.append("260")
    assert store.get(state.id).liked == []  # a copy: nothing is real before save
    store.save(copy)
    store.close()
    reopened = open_store(url, scope)  # a restart keeps it
    assert reopened.get(state.id).liked == ["260"] and reopened.get(state.id).user == "1"
    assert open_store(url).count() == 0  # another dataset's store does not see it
    reopened.delete(state.id)
    with pytest.raises(ConversationNotFound):
        reopened.get(state.id)
    with pytest.raises(ConversationNotFound):
        reopened.delete(state.id)
    with pytest.raises(ConversationNotFound):
        reopened.save(copy)  # a deleted conversation does not come back from a turn that was running


def test_transcript_keeps_the_last_turns(url: str) -> None:
    store = open_store(url, max_turns=4)
    state = store.create()
    state.liked.append("1")
    state.turns = [Turn(role="user" if n % 2 == 0 else "assistant", text=f"t{n}") for n in range(10)]
    store.save(state)
    kept = store.get(state.id)
    assert [t.text for t in kept.turns] == ["t6", "t7", "t8", "t9"] and kept.liked == ["1"]


def test_five_thousand_conversations_do_not_stay_forever(url: str) -> None:
    store = open_store(url, max_conversations=100)
    started = time.perf_counter()
    ids = [store.create().id for _ in range(5000)]
    elapsed = time.perf_counter() - started
    print(f"{url.split(':')[0]}: 5,000 creates with eviction in {elapsed:.1f} s")
    assert store.count() == 100
    assert store.get(ids[-1]).id == ids[-1]
    with pytest.raises(ConversationNotFound):
        store.get(ids[0])
    with pytest.raises(ConversationNotFound):
        store.get(ids[-101])
    store.close()


def test_unused_conversations_expire(url: str) -> None:
    store = open_store(url, ttl_s=0.5)
    old = store.create()
    time.sleep(0.3)
    kept = store.create()
    with store.hold(kept.id, 1.0):  # use counts, not only writes of the state
        pass
    time.sleep(0.3)
    with pytest.raises(ConversationNotFound):
        store.get(old.id)
    with pytest.raises(ConversationNotFound), store.hold(old.id, 1.0):
        pass
    assert store.get(kept.id).id == kept.id
    assert store.evict() == 1 and store.count() == 1


def _corrupt(url: str, scope: str, conversation_id: str) -> None:
    """Truncate the stored JSON behind the store's back, as a torn write or a bad migration would."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("UPDATE conversations SET state = substr(state, 1, 20) WHERE scope = ? AND id = ?",
                               (scope, conversation_id))
    else:
        import psycopg

        with psycopg.connect(url) as connection:
            connection.execute("UPDATE conversations SET state = left(state, 20) WHERE scope = %s AND id = %s",
                               (scope, conversation_id))


def test_a_corrupt_row_is_quarantined_with_a_warning(url: str, caplog: pytest.LogCaptureFixture) -> None:
    scope = uuid.uuid4().hex
    store = open_store(url, scope)
    broken, fine = store.create(), store.create()
    _corrupt(url, scope, broken.id)
    with caplog.at_level(logging.WARNING, logger="recagent.store"), pytest.raises(CorruptConversation) as error:
        store.get(broken.id)
    assert broken.id in str(error.value) and "quarantine" in str(error.value)
    assert any(broken.id in record.getMessage() for record in caplog.records), caplog.text
    assert [i for i, _ in store.quarantined()] == [broken.id]
    assert store.get(fine.id).id == fine.id  # the rest is served
    with pytest.raises(ConversationNotFound):
        store.get(broken.id)
    assert open_store(url, scope).count() == 1  # and a restart is no problem either


HOLDER = """
import sys, time
from agent.conversations import ConversationsConfig, open_conversation_store
store = open_conversation_store(ConversationsConfig(url=sys.argv[1]), sys.argv[2])
with store.hold(sys.argv[3], 5.0):
    print("held", flush=True)
    time.sleep(600)
"""


def test_hold_excludes_other_processes_until_the_holder_dies(store: SQLConversationStore, url: str) -> None:
    state = store.create()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, store.scope, state.id], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(Conflict, match="busy"), store.hold(state.id, 0.5):
            pass
        assert 0.4 < time.monotonic() - started < 5
        other = store.create()
        with store.hold(other.id, 0.5):  # other conversations are not blocked
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    started = time.monotonic()
    with store.hold(state.id, 10.0):  # the kernel or the server released the dead holder's lock
        assert time.monotonic() - started < 3


def test_two_sqlite_stores_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    """Open-file-description locks: per open file, not per process, so closing another store's file
    releases nothing."""
    url = f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
    first, second = open_store(url, "movies"), open_store(url, "movies")
    state = first.create()
    with first.hold(state.id, 1.0):
        open_store(url, "movies").close()
        with pytest.raises(Conflict), second.hold(state.id, 0.2):
            pass
    with second.hold(state.id, 1.0):
        pass


def test_a_read_only_sqlite_store_changes_nothing_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    writable = open_store(f"sqlite:///{path}", "movies")
    state = writable.create()
    state.liked.append("1")
    writable.save(state)
    writable.close()
    store = open_store(f"sqlite:///{path}?mode=ro", "movies")
    changed = store.get(state.id)
    changed.liked.append("2")
    for write in (lambda: store.save(changed), lambda: store.delete(state.id), lambda: store.create(),
                  lambda: store.hold(state.id, 1.0).__enter__()):
        with pytest.raises(Unavailable, match="read-only"):
            write()
    store.close()
    assert open_store(f"sqlite:///{path}", "movies").get(state.id).liked == ["1"]


def damage_table(path: Path, table: str = "conversations") -> None:
    """Overwrite a table's root page with junk, as a torn write or a failing disk would."""
    connection = sqlite3.connect(path)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    connection.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)


def test_a_damaged_sqlite_file_is_refused_at_start_and_left_as_it_was(tmp_path: Path) -> None:
    """Before the check this store opened and then answered every request with 503 'database disk image is
    malformed'; now opening says which file is damaged and what to do, and touches nothing."""
    path = tmp_path / "conversations.sqlite3"
    store = open_store(f"sqlite:///{path}", "movies")
    for _ in range(50):
        store.create()
    store.close()
    damage_table(path)
    before = path.read_bytes()
    for url in (f"sqlite:///{path}", f"sqlite:///{path}?mode=ro"):
        with pytest.raises(DataError, match="conversation store is damaged") as error:
            open_store(url, "movies")
        assert error.value.path == path and str(error.value).startswith(f"{path}: ")
        assert "quick_check" in str(error.value) and ".recover" in str(error.value) and "\n" not in str(error.value)
    assert path.read_bytes() == before  # nothing written, nothing moved
    wal = tmp_path / "conversations.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # and no write waits in the log either

    path.write_bytes(b"not a database, " * 512)  # not SQLite at all
    with pytest.raises(DataError, match="not a database"):
        open_store(f"sqlite:///{path}", "movies")
    path.rename(tmp_path / "aside.sqlite3")  # what the message suggests: moved aside, the store starts empty
    assert open_store(f"sqlite:///{path}", "movies").count() == 0


def test_store_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown scheme"):
        open_conversation_store(ConversationsConfig(url="mysql://localhost/x"), "s")
    with pytest.raises(SettingsError, match="mode=ro"):
        open_conversation_store(ConversationsConfig(url=f"sqlite:///{tmp_path}/x.sqlite3?cache=shared"), "s")
    with pytest.raises(Unavailable, match="cannot be reached"):
        open_conversation_store(ConversationsConfig(url="postgresql://nobody@127.0.0.1:1/none"), "s")


def test_protocol_is_what_the_dialogue_uses(store: ConversationStore) -> None:
    """Both stores satisfy the interface agent.dialogue is typed against (checked by mypy too)."""
    assert all(callable(getattr(store, name)) for name in
               ("create", "get", "save", "delete", "hold", "evict", "count", "close"))
