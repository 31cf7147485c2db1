"""Upload files a killed worker left behind: a `leadscore serve` process sweeps them when it
starts, and only them (stale, ours by name, their owner gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from leadscore.core.uploads import ORPHAN_SECONDS, sweep_orphans

from ..api.conftest import deploy
from .conftest import Deployment, serve

HOURS = 3600.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    """The embedded default (SQLite file, in-process cache): no other server needed."""
    return deploy("sqlite-memory", tmp_path_factory.mktemp("embedded"), model_dir)


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped): nobody owns its files."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _file(directory: Path, name: str, age_seconds: float) -> Path:
    path = directory / name
    path.write_bytes(b"lead_id,converted\n1,true\n")
    when = time.time() - age_seconds
    os.utime(path, (when, when))
    return path


def test_a_starting_server_removes_stale_orphaned_uploads_and_nothing_else(
    embedded: Deployment, tmp_path: Path
) -> None:
    uploads = embedded.settings.home / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    gone, uid = _exited_pid(), "0123456789abcdef0123456789abcdef"
    # A process started now holds a pid that an older file names: a reused pid, not its owner.
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stale = [
            _file(uploads, f"leadscore-upload-{gone}-{uid}.csv", 2 * HOURS),
            _file(uploads, f"leadscore-upload-{gone}-{uid[::-1]}", 2 * HOURS),  # no suffix
            _file(uploads, f"leadscore-upload-{newer.pid}-{uid}.parquet", 2 * HOURS),
        ]
        kept = [
            # Its writer may still be sending it, or its job just began.
            _file(uploads, f"leadscore-upload-{gone}-{'f' * 32}.csv", 60),
            # Not ours by name: never touched.
            _file(uploads, f"{uid}.csv", 2 * HOURS),
            _file(uploads, "leadscore-upload-notes.txt", 2 * HOURS),
            _file(uploads, f"leadscore-upload-{gone}-{uid}.csv.bak", 2 * HOURS),
        ]
        linked = uploads / f"leadscore-upload-{gone}-{'e' * 32}.csv"
        linked.symlink_to(kept[2])  # a link is not a file we wrote
        with serve(embedded, tmp_path / "server.log", workers=1) as server:
            assert httpx.get(server.url + "/api/v1/ml/health").status_code == 200
            log = server.log.read_text()
    finally:
        newer.kill()
        newer.wait()
    assert [p.name for p in stale if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []
    assert linked.is_symlink()
    assert "removed 3 orphaned upload file(s)" in log, log[-2000:]
    assert str(uploads) not in log  # names only


def test_an_upload_whose_owner_still_runs_is_kept_however_old(tmp_path: Path) -> None:
    gone, uid = _exited_pid(), "0123456789abcdef0123456789abcdef"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(1.5)  # the files are written after their owners started (/proc has seconds)
        mine = _file(tmp_path, f"leadscore-upload-{os.getpid()}-{uid}.csv", 0)
        others = _file(tmp_path, f"leadscore-upload-{owner.pid}-{uid}.csv", 0)
        orphan = _file(tmp_path, f"leadscore-upload-{gone}-{uid}.csv", 0)
        # Two hours on, a job still running (here or in another worker) keeps its file.
        later = time.time() + ORPHAN_SECONDS + 2 * HOURS
        removed = sweep_orphans(tmp_path, now=later)
    finally:
        owner.kill()
        owner.wait()
    assert removed == [orphan]
    assert mine.exists()
    assert others.exists()
    assert sweep_orphans(tmp_path, now=later) == [others]  # its owner has gone since
