"""Download official dataset archives (GroupLens), check them, and unpack them into the data folder.

The checksum is the MD5 that GroupLens publishes beside each archive (<archive>.md5); a SHA-256 can be
pinned too. Nothing is unpacked unless the check passes, and the dataset folder appears in one rename,
so an interrupted download never leaves a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from core.errors import RecagentError

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Source:
    archive: str  # file name under the base URL
    folder: str  # folder inside the archive, and its name in the data folder
    license: str


SOURCES: dict[str, Source] = {
    "movielens-small": Source("ml-latest-small.zip", "ml-latest-small",
                              "GroupLens research license: see README.txt inside the archive"),
    "movielens-100k": Source("ml-100k.zip", "ml-100k",
                             "GroupLens research license: no redistribution; see README inside the archive"),
}


class FetchError(RecagentError):
    pass


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {url.rsplit('/', 1)[-1]}",
                      disable=total is None) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        raise FetchError(f"cannot download {url}: {exc}") from None


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, data_dir: Path, base_url: str = GROUPLENS, sha256: str | None = None,
          timeout: float = 60.0, force: bool = False) -> Path:
    """Fetch dataset `name` into data_dir/<folder> and return that folder; cached after the first time."""
    if name not in SOURCES:
        raise FetchError(f"unknown dataset {name!r}; fetchable: {', '.join(SOURCES)}")
    source = SOURCES[name]
    target = data_dir / source.folder
    marker = target / ".recagent-fetch.json"
    if target.exists() and not force:
        if marker.exists():
            return target
        raise FetchError(f"{target} exists but was not fetched by recagent; remove it or use --force")
    data_dir.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".fetch-") as tmp_name:
        tmp = Path(tmp_name)
        archive = tmp / source.archive
        _download(base + source.archive, archive, timeout)
        md5_file = tmp / (source.archive + ".md5")
        _download(base + source.archive + ".md5", md5_file, timeout)
        published = md5_file.read_text(encoding="utf-8", errors="replace").split()
        expected_md5 = next((w.lower() for w in published if len(w) == 32), None)
        if expected_md5 is None:
            raise FetchError(f"{base + source.archive}.md5 holds no MD5 checksum")
        actual_md5 = _digest(archive, "md5")
        if actual_md5 != expected_md5:
            raise FetchError(f"checksum mismatch for {source.archive}: MD5 {actual_md5}, published "
                             f"{expected_md5}; nothing was unpacked")
        actual_sha = _digest(archive, "sha256")
        if sha256 and actual_sha != sha256.lower():
            raise FetchError(f"checksum mismatch for {source.archive}: SHA-256 {actual_sha}, expected {sha256}")
        unpacked = tmp / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise FetchError(f"{source.archive}: unsafe path {member!r} in archive")
                zf.extractall(unpacked)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{source.archive} is not a valid zip archive: {exc}") from None
        folder = unpacked / source.folder
        if not folder.is_dir():
            raise FetchError(f"{source.archive} has no folder {source.folder}/")
        (folder / ".recagent-fetch.json").write_text(json.dumps(
            {"url": base + source.archive, "md5": actual_md5, "sha256": actual_sha, "license": source.license},
            indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    return target
