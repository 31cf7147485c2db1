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


def ordered_bank_sample(workdir: Path) -> Path:
    """Every 5th row of Bank Marketing: still in time order, a fifth of the work."""
    sample = workdir / "bank-ordered.csv"
    if not sample.exists():
        full = pl.read_csv(BANK_MARKETING, separator=";", infer_schema_length=None)
        full.gather_every(5).write_csv(sample, separator=";")
    return sample


def test_backtest_replays_bank_marketing_in_row_order_with_a_plot(workdir: Path) -> None:
    sample = ordered_bank_sample(workdir)
    full = pl.read_csv(BANK_MARKETING, separator=";", infer_schema_length=None)
    result = run(
        "backtest", "--data", sample.name, "--mapping", str(ROOT / "examples/bank-marketing.yaml"),
        "--window", "2000", "--policy", "all", "--json", "--plot", "backtest.png", cwd=workdir,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["rows"] == full.height // 5 + (full.height % 5 > 0)
    assert report["window"] == report["start"] == 2000
    assert set(report["policies"]) == {"static", "recalibrate", "retrain", "prior"}
    # The file's own drift: the later leads convert far more often than the first ones.
    assert report["base_rate"]["scored"] > 2 * report["base_rate"]["training"]
    last = {name: p["last_fifth"]["brier"] for name, p in report["policies"].items()}
    assert last["recalibrate"] < last["static"]
    assert (workdir / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run(
        "backtest", "--data", sample.name, "--mapping", str(ROOT / "examples/bank-marketing.yaml"),
        "--window", "3000", "--policy", "static", cwd=workdir,
    ).stdout  # fmt: skip
    assert "prior (past)" in table
    assert "static" in table
    assert "retrain" not in table


def test_backtest_without_an_order_in_time_is_refused(workdir: Path) -> None:
    mapping = (ROOT / "examples/bank-marketing.yaml").read_text().replace("row_order: time", "")
    (workdir / "unordered.yaml").write_text(mapping)
    sample = ordered_bank_sample(workdir).name
    result = run("backtest", "--data", sample, "--mapping", "unordered.yaml", cwd=workdir,
                 check=False)  # fmt: skip
    assert result.returncode == 2
    assert "no creation time to replay them by: give --order-by COLUMN" in result.stderr


def test_evaluate_split_time_trains_on_the_past_and_tests_on_the_newest(workdir: Path) -> None:
    result = run("evaluate", "--data", "train.parquet", "--split", "time", "--json", cwd=workdir)
    metrics = json.loads(result.stdout)["conversion"]
    assert metrics["n"] == 8000 * 0.2
    assert metrics["auc"] > 0.7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backtest", "--data", "leads.csv", "--policy", "often"], "policy must be"),
        (["evaluate", "--data", "leads.csv", "--split", "random"], "--split takes `time`"),
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


def test_demo_serves_a_scored_demo_team_and_keeps_streaming(workdir: Path) -> None:
    port = free_port()
    env = {**os.environ, "LEADSCORE_HOME": str(workdir / "demo-home"), "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadscore",
            "demo",
            "--port",
            str(port),
            "--leads",
            "150",
            "--stream-rate",
            "25",
        ],
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
        assert f"http://127.0.0.1:{port}/dashboard#key={key}\n" in output  # one-click sign-in
        base = f"http://127.0.0.1:{port}/api/v1/ml"
        assert httpx.get(f"{base}/health").json()["status"] == "healthy"
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/score/syn_0000001", headers=bearer).status_code == 200
        # The stream goes on through the API: new leads (named live<block>_<n>, the first
        # block handed out from its end), known leads re-scored, outcomes recorded.
        seeded = [f"syn_{i:07d}" for i in range(150)]
        new_lead = rescored = outcomes = None
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as api:
            while time.monotonic() < deadline and not (new_lead and rescored and outcomes):
                time.sleep(0.5)
                if api.get("/score/live0001_0049").status_code == 200:
                    new_lead = "live0001_0049"
                for lead_id in seeded:
                    history = api.get(f"/score/{lead_id}/history").json()["scores"]
                    if len(history) > 1:
                        rescored = history
                        break
                status = api.get("/model/status").json()
                counted = [v["n"] for v in status["live_quality"]["versions"].values()]
                outcomes = sum(counted) or None
            assert new_lead, "no new lead scored by the stream"
            assert rescored, "no seeded lead re-scored by the stream"
            assert outcomes, "no outcome recorded by the stream"
            assert status["traffic"]["predictions"] > 150
        assert rescored[0]["scored_at"] > rescored[1]["scored_at"]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert (workdir / "demo-home" / "leadscore.db").is_file()


def test_make_demo_takes_a_port() -> None:
    """`make demo PORT=N` hands the port to `leadscore demo --port` (tested above)."""
    for extra, port in (([], "8000"), (["PORT=8080"], "8080")):
        # Run as a top-level make: under `make test` the inherited MAKEFLAGS/MAKELEVEL would
        # make it print "Entering/Leaving directory" around the plan.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        plan = subprocess.run(
            ["make", "--no-print-directory", "-n", "demo", *extra],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plan.returncode == 0, plan.stderr
        assert plan.stdout.strip().splitlines()[-1].endswith(f"leadscore demo --port {port}")


def without_secret(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`leadscore ...` with no LEADSCORE_JWT_SECRET in its environment."""
    environment = {k: v for k, v in os.environ.items() if k != "LEADSCORE_JWT_SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        cwd=home.parent,
        env=environment | {"LEADSCORE_HOME": str(home), "OMP_NUM_THREADS": "2"} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_a_key_once_and_stores_only_its_hash(workdir: Path) -> None:
    import sqlite3

    # No JWT secret: creating a key signs nothing.
    result = without_secret("keys", "create", "--team", "crm", "--role", "viewer",
                            home=workdir / "keys-home")  # fmt: skip
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
    run("train", "--data", "train.parquet", "-o", "second", "--no-search", cwd=workdir)
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


def test_keys_list_and_revoke_without_a_jwt_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for team, role in (("north", "admin"), ("north", "agent"), ("south", "viewer")):
        made = without_secret("keys", "create", "--team", team, "--role", role, home=home)
        assert made.returncode == 0, made.stderr
    listed = without_secret("keys", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["id", "team", "name", "role", "prefix", "created_at", "revoked_at"]
    assert [(r[1], r[3], r[6]) for r in rows] == [
        ("north", "admin", "active"), ("north", "agent", "active"), ("south", "viewer", "active")
    ]  # fmt: skip
    north = without_secret("keys", "list", "--team", "north", home=home).stdout
    assert "south" not in north
    agent_id = rows[1][0]
    revoked = without_secret("keys", "revoke", agent_id, home=home)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"key {agent_id} (api, agent) revoked at ")
    again = without_secret("keys", "revoke", agent_id, home=home)
    assert again.returncode == 0  # idempotent: the first revocation time stays
    assert again.stdout == revoked.stdout
    after = without_secret("keys", "list", home=home).stdout.splitlines()[2].split("\t")
    assert after[0] == agent_id
    assert after[6] != "active"
    unknown = without_secret("keys", "revoke", "9999", home=home)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no key 9999"
    nobody = without_secret("keys", "list", "--team", "west", home=home)
    assert nobody.returncode == 2
    assert "no team named 'west'" in nobody.stderr


def test_teams_set_validates_and_prints_the_settings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert without_secret("keys", "create", "--team", "north", home=home).returncode == 0
    result = without_secret("teams", "set", "--team", "north", "--commission-rate", "0.03",
                            "--hot", "80", "--warm", "55", home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"team": "north", "commission_rate": 0.03,
        "hot_threshold": 80.0, "warm_threshold": 55.0, "escalation_confidence": None}  # fmt: skip
    more = without_secret("teams", "set", "--team", "north", "--escalation-confidence", "0.7",
                          home=home)  # fmt: skip
    assert json.loads(more.stdout)["escalation_confidence"] == 0.7
    assert json.loads(more.stdout)["hot_threshold"] == 80.0  # what was not given stays
    for args, message in [
        (["--warm", "85"], "warm_threshold (85) must be below hot_threshold (80)"),
        (["--commission-rate", "1.5"], "commission_rate: Input should be less than or equal to 1"),
        (["--hot", "-1"], "hot_threshold: Input should be greater than or equal to 0"),
    ]:
        bad = without_secret("teams", "set", "--team", "north", *args, home=home)
        assert bad.returncode == 2, bad.stdout
        assert message in bad.stderr
        assert bad.stderr.count("\n") == 1  # one line, no traceback
    unknown = without_secret("teams", "set", "--team", "west", "--hot", "90", home=home)
    assert unknown.returncode == 2
    assert "no team named 'west'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [(["demo", "--host", "0.0.0.0"], {}),
     (["serve", "--host", "0.0.0.0"], {"LEADSCORE_DEMO": "true"}),
     (["demo", "--host", "192.168.1.10"], {})],
)  # fmt: skip
def test_demo_refuses_a_public_host(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    result = without_secret(*args, home=tmp_path / "home", **env)
    assert result.returncode == 2
    assert "demo mode" in result.stderr
    assert "binds only 127.0.0.1" in result.stderr
    assert not (tmp_path / "home" / "leadscore.db").exists()  # refused before anything started


@pytest.mark.parametrize("secret", ["a" * 40, "ab" * 20])
def test_serve_refuses_a_guessable_secret(tmp_path: Path, secret: str) -> None:
    result = without_secret("serve", home=tmp_path / "home", LEADSCORE_JWT_SECRET=secret)
    assert result.returncode == 2
    assert "LEADSCORE_JWT_SECRET looks guessable" in result.stderr
