"""Shared fixtures: the real data folder, a real embedder, small real-data datasets, Chroma stores."""

from __future__ import annotations

import csv
import inspect
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.assemble import Agent, build_agent, index_dataset
from agent.settings import Settings, load_settings
from core.processes import free_port, stop_process
from index.config import EmbedderConfig, IndexConfig
from index.embedder import Embedder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    configured = os.environ.get("RECAGENT_DATA_DIR")
    folder = Path(configured) if configured else REPO.parent / "shared" / "data"
    if not (folder / "ml-latest-small" / "ratings.csv").exists():
        pytest.fail(f"real datasets not found in {folder}; set RECAGENT_DATA_DIR")
    return folder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(EmbedderConfig())


def write_movielens_subset(source: Path, dest: Path, n_items: int) -> Path:
    """The n most-rated ml-latest-small movies with all their ratings and tags, in the same CSV format."""
    dest.mkdir(parents=True, exist_ok=True)
    with (source / "ratings.csv").open(newline="") as handle:
        ratings = list(csv.DictReader(handle))
    counts = Counter(r["movieId"] for r in ratings)
    keep = {movie for movie, _ in counts.most_common(n_items)}
    with (source / "movies.csv").open(newline="") as src, (dest / "movies.csv").open("w", newline="") as out:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if r["movieId"] in keep)
    with (dest / "ratings.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["userId", "movieId", "rating", "timestamp"])
        writer.writeheader()
        writer.writerows(r for r in ratings if r["movieId"] in keep)
    with (source / "tags.csv").open(newline="") as src, (dest / "tags.csv").open("w", newline="") as out:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if r["movieId"] in keep)
    return dest


def write_lastfm_subset(source: Path, dest: Path, n_artists: int) -> Path:
    """The n Last.fm artists with the most listeners, with all their plays and tags, in the same files."""
    dest.mkdir(parents=True, exist_ok=True)

    def rows(name: str) -> tuple[str, list[list[str]]]:
        lines = (source / name).read_text(encoding="utf-8").splitlines()
        return lines[0], [line.split("\t") for line in lines[1:] if line.strip()]

    header, plays = rows("user_artists.dat")
    keep = {artist for artist, _ in Counter(p[1] for p in plays).most_common(n_artists)}
    for name, column in (("artists.dat", 0), ("user_artists.dat", 1), ("user_taggedartists.dat", 1)):
        header, table = rows(name)
        text = "\n".join([header, *("\t".join(r) for r in table if r[column] in keep)]) + "\n"
        (dest / name).write_text(text, encoding="utf-8")
    shutil.copy(source / "tags.dat", dest / "tags.dat")
    return dest


@pytest.fixture(scope="session")
def small_data_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with 'movies-small' (the 300 most-rated ml-latest-small movies, their ratings and
    tags) and 'music-small' (the 1,500 Last.fm artists with the most listeners, their plays and tags)."""
    root = tmp_path_factory.mktemp("data")
    write_movielens_subset(data_dir / "ml-latest-small", root / "movies-small", 300)
    write_lastfm_subset(data_dir / "lastfm-hetrec2011", root / "music-small", 1500)
    return root


def make_settings(data_dir: Path, chroma_path: Path, dataset: str = "movies-small", **overrides: object) -> Settings:
    """Settings for a test: its own Chroma folder, and conversations in a SQLite file beside it."""
    conversations = chroma_path.with_name(f"{chroma_path.name}-conversations.sqlite3")
    return load_settings(environ={}, **{"data.data_dir": data_dir, "data.dataset": dataset,
                                        "index.path": chroma_path, "conversations.url": f"sqlite:///{conversations}",
                                        **overrides})


@pytest.fixture(scope="session")
def small_index(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """Settings pointing at a built embedded index of movies-small."""
    from index.loaders import load_dataset

    settings = make_settings(small_data_dir, tmp_path_factory.mktemp("chroma"))
    index_dataset(settings, load_dataset("movies-small", small_data_dir), embedder, progress=False)
    return settings


@pytest.fixture(scope="session")
def small_eval_index(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A Chroma folder with the evaluation index of movies-small's loo training part ('movies-small-loo', what
    eval.harness.prepare builds for loo and candidates20), built once per session. Preparing writes the build
    state even when nothing changed, so a test prepares on its own `copy_index` of this folder."""
    from eval.protocols import leave_one_out
    from index.loaders import load_dataset

    settings = make_settings(small_data_dir, tmp_path_factory.mktemp("eval-small") / "chroma")
    split = leave_one_out(load_dataset("movies-small", small_data_dir))
    index_dataset(settings, split.train, embedder, progress=False, purpose="eval")
    return settings.index.path


def copy_index(built: Path, dest: Path) -> Path:
    """A copy of a built Chroma folder at `dest`, to prepare or build on: a file copy, no embedding."""
    shutil.copytree(built, dest)
    return dest


@pytest.fixture(scope="session")
def small_agent(small_index: Settings, embedder: Embedder) -> Agent:
    """The agent over movies-small, assembled by the composition root, without an LLM."""
    return build_agent(small_index, "movies-small", llm=None, embedder=embedder)


def agent_with_llm(base: Agent, llm: object, **settings: object) -> Agent:
    """The same index with another LLM (a scripted one, or a real backend), assembled the same way."""
    tuned = base.settings.model_copy(update=settings) if settings else base.settings
    return build_agent(tuned, llm=llm, index=base.index, encoder=base.encoder)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexConfig]:
    """A real `chroma run` server on loopback, stopped at the end of the session."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma command (from the chromadb package) is not installed"
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = (path / "server.log").open("w")
    process = subprocess.Popen([chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    import urllib.request

    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"chroma server did not start: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield IndexConfig(chroma="server", host="127.0.0.1", port=port)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for Playwright (Playwright's own browser download fails here)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    assert os.path.exists(path), "install Debian's chromium (make test does)"
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL cluster of the session's own (Debian's package), on loopback."""
    from postgres_cluster import postgres_cluster

    with postgres_cluster(free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def model_folder() -> Path:
    """The default LLM as a safetensors folder (converted from the PyPI GGUF once per machine)."""
    from agent.llm.model_files import default_model_folder

    return default_model_folder()


@pytest.fixture(scope="session")
def transformers_llm(model_folder: Path) -> object:
    from agent.llm.backends import make_llm
    from agent.llm.base import LLMConfig

    return make_llm(LLMConfig(backend="transformers"))


class VllmServer:
    """`recagent llm serve` on loopback, started in the background: its start-up (about two minutes of
    imports in three processes) overlaps the tests that do not need it, which run first."""

    def __init__(self, folder: Path) -> None:
        from agent.llm.model_files import default_model_folder

        default_model_folder()  # converted here once, not by the server and a test at the same time
        self.port, self.folder, self.log = free_port(), folder, folder / "server.log"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "cli.out").open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "llm", "serve", "--port",
                                             str(self.port), "--log", str(self.log)],
                                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout_s: float = 900) -> None:
        deadline = time.time() + timeout_s
        while b"serving at" not in (self.folder / "cli.out").read_bytes():
            if self.process.poll() is not None or time.time() > deadline:
                self.process.kill()
                pytest.fail(f"recagent llm serve did not start:\n{(self.folder / 'cli.out').read_text()[-2000:]}\n"
                            f"{self.log.read_text()[-3000:] if self.log.exists() else ''}")
            time.sleep(1)


_VLLM: list[VllmServer] = []  # the session's server, started once collection shows a test needs it


def _vllm_server() -> VllmServer:
    """The session's server, started on the first call."""
    if not _VLLM:
        import tempfile

        _VLLM.append(VllmServer(Path(tempfile.mkdtemp(prefix="recagent-vllm-"))))
    return _VLLM[0]


def _needs_vllm(item: pytest.Item) -> bool:
    return "vllm_config" in getattr(item, "fixturenames", ())


FIXTURE_MARKERS = {  # a fixture anywhere in a test's closure -> the marker the test gets (pyproject's list)
    "model_folder": "llm", "transformers_llm": "llm",
    "vllm_config": "vllm",
    "postgres_url": "postgres",
    "chroma_server": "server",
    "chromium": "browser",
    "eval_chroma_path": "slow",  # the evaluation index of the whole ml-latest-small, then a full evaluation
}
DIRECT_USES = {  # what a test (or a fixture of its module) may do without those fixtures: caught all the same
    "sync_playwright": "browser", "TransformersLLM(": "llm", "load_base(": "llm", "LoraTrainer(": "llm",
    '"--llm-backend", "transformers"': "llm",
}


def _source(function: object) -> str:
    try:
        return inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def markers_for(item: pytest.Item) -> set[str]:
    """The markers a test needs: from the fixtures it uses, and from what its own code and its module's
    fixtures do directly (a Playwright browser, the model loaded by hand or by a command it starts)."""
    found = {FIXTURE_MARKERS[name] for name in getattr(item, "fixturenames", ()) if name in FIXTURE_MARKERS}
    module = item.nodeid.split("::")[0]
    info = getattr(item, "_fixtureinfo", None)
    local = [d.func for defs in (info.name2fixturedefs.values() if info else ()) for d in defs if d.baseid == module]
    text = "\n".join(_source(f) for f in [getattr(item, "function", None), *local])
    found |= {marker for needle, marker in DIRECT_USES.items() if needle in text}
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():
        found.add("postgres")  # tests/agent/test_store.py's `url` asks for postgres_url by name in this case
    return found


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets the markers of what it needs (`markers_for`; `make test-fast` leaves those out). The
    tests that need the vLLM server run last (in their usual order), so that its start-up overlaps the
    others; the sort is stable and no test depends on another's order."""
    for item in items:
        for marker in sorted(markers_for(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(marker)
    items.sort(key=_needs_vllm)


@pytest.fixture(autouse=True)
def _default_model_only_with_the_llm_marker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test without the llm marker that reaches for the default model in this process fails at once (on a
    fresh machine that is a minute of conversion inside `make test-fast`); commands it starts are not seen."""
    if request.node.get_closest_marker("llm") is None:
        import agent.llm.model_files

        def refuse(*args: object, **kwargs: object) -> Path:
            raise AssertionError(f"{request.node.nodeid} loads the default model: ask for the model_folder "
                                 "fixture, which marks it llm")

        monkeypatch.setattr(agent.llm.model_files, "default_model_folder", refuse)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(_needs_vllm(item) for item in session.items) and not session.config.option.collectonly:
        _vllm_server()


@pytest.fixture(scope="session")
def vllm_config(model_folder: Path) -> Iterator[object]:
    """A real vLLM server (the CPU build here) on loopback with the default model, started through
    `recagent llm serve` when collection ends and stopped with SIGTERM, which must shut it down cleanly."""
    import signal
    import urllib.request

    from agent.llm.base import LLMConfig

    server = _vllm_server()  # started at collection unless no collected test named this fixture
    server.wait()
    with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
        assert response.status == 200
    yield LLMConfig(backend="vllm", url=server.url, timeout_s=120)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, (server.folder / "cli.out").read_text()[-2000:]
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/health", timeout=5)
    shutil.rmtree(server.folder, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A server started for tests that were then deselected or never reached is not left running."""
    for server in _VLLM:
        stop_process(server.process)  # nothing to do if the fixture already stopped it


@pytest.fixture(scope="session")
def eval_chroma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded Chroma for the evaluation tests, so the loo index is built once per session."""
    return tmp_path_factory.mktemp("eval-chroma")
