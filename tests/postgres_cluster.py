"""A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package (`make test` installs
it): initdb in a temporary folder, started on a loopback port, stopped and removed at the end. As root
(CI) the server runs as the `postgres` user, because PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path:
    """The folder with initdb and pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make test does this)")
    return Path(initdb).parent


@contextmanager
def postgres_cluster(port: int) -> Iterator[str]:
    """A running cluster on 127.0.0.1:`port` (trust auth, fsync off: the tests kill processes, not machines);
    yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="recagent-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    binaries, data = postgres_bin(), folder / "data"

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}\n{log[-3000:]}")

    try:
        run(str(binaries / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--no-sync",
            "--encoding=UTF8", "--locale=C")
        options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
            "-o", options, "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
