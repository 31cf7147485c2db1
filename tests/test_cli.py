"""The `leadscore` command end to end, as a user runs it: real files, real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from .conftest import BANK_MARKETING, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADSCORE_HOME": str(cwd / "home"), "OMP_NUM_THREADS": "2",
           "LEADSCORE_JWT_SECRET": "cli-tests-4Hq8Zr2Wm6Kx0Pv3Ny7Jb5Ls9Td1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    run("generate", "--n", "8000", "--seed", "3", "-o", "train.parquet", cwd=path)
    run("generate", "--n", "1500", "--seed", "4", "-o", "leads.csv", cwd=path)
    run("train", "--data", "train.parquet", "-o", "model", cwd=path)
    return path


def test_generate_writes_every_format(workdir: Path) -> None:
    run("generate", "--n", "300", "--seed", "5", "-o", "g.jsonl", cwd=workdir)
    parquet = pl.read_parquet(workdir / "train.parquet")
    assert parquet.height == 8000
    assert {"p_conversion", "converted", "interaction_history"} <= set(parquet.columns)
    assert pl.read_csv(workdir / "leads.csv").height == 1500
    assert len((workdir / "g.jsonl").read_text().splitlines()) == 300


def test_train_writes_an_artifact_with_a_card(workdir: Path) -> None:
    card = json.loads((workdir / "model" / "card.json").read_text())
    assert card["metrics"]["conversion"]["auc"] > 0.75
    assert len(card["version"]) == 16


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_score_streams_a_file_in_any_format(workdir: Path, suffix: str) -> None:
    out = workdir / f"scores.{suffix}"
    result = run(
        "score",
        "leads.csv",
        "-o",
        out.name,
        "--model",
        "model",
        "--explain",
        "--chunk-size",
        "400",
        cwd=workdir,
    )
    assert "scored 1500 leads" in result.stdout
    scores = {"csv": pl.read_csv, "parquet": pl.read_parquet, "jsonl": pl.read_ndjson}[suffix](out)
    leads = pl.read_csv(workdir / "leads.csv")
    assert scores["lead_id"].to_list() == leads["lead_id"].to_list()
    assert scores["ml_score"].is_between(0, 100).all()
    assert scores["reasons"].str.contains("points").all()


def test_evaluate_model_prints_json(workdir: Path) -> None:
    result = run("evaluate", "--data", "leads.csv", "--model", "model", "--json", cwd=workdir)
    metrics = json.loads(result.stdout)
    assert metrics["conversion"]["n"] == 1500
    assert 0.7 < metrics["conversion"]["auc"] < 1


def test_cross_validation_on_bank_marketing_with_plot(workdir: Path) -> None:
    sample = workdir / "bank.csv"
    bank = BANK_MARKETING
    full = pl.read_csv(bank, separator=";", infer_schema_length=None)
    full.sample(6000, seed=2).write_csv(sample, separator=";")
    result = run(
        "evaluate",
        "--data",
        sample.name,
        "--mapping",
        str(ROOT / "examples/bank-marketing.yaml"),
        "--cv",
        "3",
        "--json",
        "--plot",
        "calibration.png",
        cwd=workdir,
    )
    metrics = json.loads(result.stdout)["conversion"]
    assert metrics["n"] == 6000
    assert {"auc", "brier", "ece", "log_loss", "n"} <= set(metrics)
    assert metrics["auc"] > 0.7
    assert (workdir / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "nope.csv", "-o", "m2"], "no such file"),
        (["train", "--data", "leads.txt", "-o", "m2"], "unsupported file type"),
        (["score", "leads.csv", "-o", "out.xlsx", "--model", "model"], "unsupported file type"),
        (["score", "leads.csv", "-o", "o.csv", "--model", "missing"], "not a model artifact"),
    ],
)
def test_errors_are_one_line_and_non_zero(workdir: Path, args: list[str], message: str) -> None:
    (workdir / "leads.txt").write_text("x")
    result = run(*args, cwd=workdir, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_constant_label_is_refused(workdir: Path) -> None:
    frame = pl.read_parquet(workdir / "train.parquet").with_columns(
        pl.lit(False).alias("converted")
    )
    frame.write_parquet(workdir / "constant.parquet")
    result = run("train", "--data", "constant.parquet", "-o", "m3", cwd=workdir, check=False)
    assert result.returncode == 2
    assert "constant" in result.stderr


def test_features_prints_the_documented_table(workdir: Path) -> None:
    table = run("features", cwd=workdir).stdout
    assert table.count("\n") == 30
    assert table in (ROOT / "docs" / "features.md").read_text()


def test_team_policy_is_recorded_in_the_card(workdir: Path) -> None:
    env_run = subprocess.run(
        [sys.executable, "-m", "leadscore", "train", "--data", "train.parquet", "-o", "m4"],
        cwd=workdir,
        env={**os.environ, "LEADSCORE_HOT_THRESHOLD": "80", "LEADSCORE_COMMISSION_RATE": "0.025"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert env_run.returncode == 0, env_run.stderr
    card = json.loads((workdir / "m4" / "card.json").read_text())
    assert card["thresholds"]["hot"] == 80.0
    assert card["thresholds"]["commission_rate"] == 0.025


def test_demo_serves_a_scored_demo_team(workdir: Path) -> None:
    port = free_port()
    env = {**os.environ, "LEADSCORE_HOME": str(workdir / "demo-home"), "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "leadscore", "demo", "--port", str(port), "--leads", "150"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if not line or line.startswith("ready"):
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output, output + process.stderr.read()
        key = next(x.split(": ", 1)[1].strip() for x in lines if x.startswith("admin API key"))
        token = next(x.split(": ", 1)[1].strip() for x in lines if x.startswith("bearer token"))
        assert "scored 150 demo leads" in output
        assert "points" in output
        base = f"http://127.0.0.1:{port}/api/v1/ml"
        assert httpx.get(f"{base}/health").json()["status"] == "healthy"
        status = httpx.get(f"{base}/model/status", headers={"X-API-Key": key}).json()
        assert status["traffic"]["predictions"] == 150
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/score/syn_0000001", headers=bearer).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert (workdir / "demo-home" / "leadscore.db").is_file()


def test_keys_create_prints_a_key_once_and_stores_only_its_hash(workdir: Path) -> None:
    import sqlite3

    env = {"LEADSCORE_JWT_SECRET": "k" * 40}
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", "keys", "create", "--team", "crm", "--role", "viewer"],
        cwd=workdir,
        env={**os.environ, "LEADSCORE_HOME": str(workdir / "keys-home"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("lsk_")
    database = sqlite3.connect(workdir / "keys-home" / "leadscore.db")
    rows = database.execute("select prefix, key_hash, role from api_keys").fetchall()
    database.close()
    assert len(rows) == 1
    assert rows[0][2] == "viewer"
    assert key not in str(rows)
    bad = run("keys", "create", "--team", "crm", "--role", "owner", cwd=workdir, check=False)
    assert bad.returncode != 0


def test_models_trial_and_compare_from_the_command_line(workdir: Path) -> None:
    run("keys", "create", "--team", "acme", cwd=workdir)
    run("train", "--data", "train.parquet", "-o", "second", "--seed", "9", cwd=workdir)
    first = run("models", "register", "model", cwd=workdir).stdout.strip()
    no_champion = run("models", "trial", "shadow", cwd=workdir, check=False)
    assert no_champion.returncode == 2
    assert no_champion.stderr.startswith("error: no champion yet")
    run("models", "promote", first, "--force", "--reason", "first model", cwd=workdir)
    second = run("models", "register", "second", cwd=workdir).stdout.strip()
    assert second != first
    started = json.loads(run("models", "trial", "split", "--share", "0.3", cwd=workdir).stdout)
    assert (started["mode"], started["share"]) == ("split", 0.3)
    assert (started["champion"], started["challenger"]) == (first, second)
    report = json.loads(run("models", "compare", "--team", "acme", cwd=workdir).stdout)
    assert (report["champion"]["version"], report["challenger"]["version"]) == (first, second)
    assert report["leads"] == 0  # nothing scored yet: no verdict
    assert report["challenger_not_worse"] is False
    assert report["reason"].startswith("too few labelled leads")
    assert json.loads(run("models", "trial", "off", cwd=workdir).stdout)["mode"] == "off"
    again = run("models", "trial", "off", cwd=workdir, check=False)
    assert again.returncode == 2
    assert "no trial is running" in again.stderr
    wrong = run("models", "trial", "canary", cwd=workdir, check=False)
    assert wrong.returncode == 2


def test_retrain_learns_from_a_mapped_crm_export(workdir: Path, tmp_path: Path) -> None:
    from .engine.test_mapping import GOOD, export, write

    data, mapping = export(tmp_path, n=800, positives=200), write(tmp_path, GOOD)
    run("keys", "create", "--team", "globex", cwd=tmp_path)
    base = run("models", "register", str(workdir / "model"), cwd=tmp_path).stdout.strip()
    run("models", "promote", base, "--force", cwd=tmp_path)
    too_few = run("retrain", "--team", "globex", cwd=tmp_path, check=False)
    assert too_few.returncode == 2
    assert "has 0 leads with outcomes; a team model needs 500" in too_few.stderr
    unmapped = run("retrain", "--team", "globex", "--mapping", str(mapping), cwd=tmp_path,
                   check=False)  # fmt: skip
    assert unmapped.returncode == 2
    result = json.loads(
        run("retrain", "--team", "globex", "--data", str(data), "--mapping", str(mapping),
            cwd=tmp_path).stdout
    )  # fmt: skip
    assert result["leads"] == 800
    assert result["parent_version"] == base
    assert result["gate"]["n"] == 160  # the newest 20 % of the export, by its Created column
    shown = json.loads(run("models", "show", result["version"], cwd=tmp_path).stdout)
    assert shown["aliases"] == [f"challenger@team:{shown['team_id']}"]
    assert "800 of them from a CRM export" in json.dumps(shown["card"])
