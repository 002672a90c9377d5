"""`recagent data fetch` against a local HTTP server serving a real GroupLens-shaped archive."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from app.cli import main
from index.fetch import FetchError, fetch
from index.loaders import load_dataset


@pytest.fixture()
def mirror(tmp_path: Path, small_data_dir: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    root.mkdir()
    archive = root / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("movies.csv", "ratings.csv"):
            zf.write(small_data_dir / "movies-small" / name, f"ml-latest-small/{name}")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    (root / "ml-latest-small.zip.md5").write_text(f"{digest}  ml-latest-small.zip\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()
    server.server_close()


def test_fetch_checks_unpacks_and_caches(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, root = mirror
    data_dir = tmp_path / "data"
    sha = hashlib.sha256((root / "ml-latest-small.zip").read_bytes()).hexdigest()
    folder = fetch("movielens-small", data_dir, base_url=url, sha256=sha)
    assert folder == data_dir / "ml-latest-small"
    assert len(load_dataset("ml-latest-small", data_dir).items) == 300
    (root / "ml-latest-small.zip").unlink()  # cached: no second download
    assert fetch("movielens-small", data_dir, base_url=url) == folder


def test_checksum_mismatch_unpacks_nothing(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, root = mirror
    (root / "ml-latest-small.zip.md5").write_text("0" * 32 + "  ml-latest-small.zip\n")
    data_dir = tmp_path / "data"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch("movielens-small", data_dir, base_url=url)
    assert not (data_dir / "ml-latest-small").exists()
    assert [p.name for p in data_dir.iterdir()] == []  # no temporary leftovers


def test_cli_fetch_and_unreachable_mirror(mirror: tuple[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = mirror
    assert main(["data", "fetch", "movielens-small", "--base-url", url, "--data-dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.strip().endswith("ml-latest-small")
    shutil.rmtree(tmp_path / "d")
    assert main(["data", "fetch", "movielens-small", "--base-url", "http://127.0.0.1:9/",
                 "--data-dir", str(tmp_path / "d")]) == 2
    assert "cannot download" in capsys.readouterr().err
