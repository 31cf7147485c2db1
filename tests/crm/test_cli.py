"""`leadscore crm add|list|remove|keygen` as an operator runs them: real processes, a real
SQLite file, no JWT secret."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr

from leadscore.core.config import StoreSettings
from leadscore.crm.secrets import box_for, new_key

from ..test_cli import without_secret


def crm(home: Path, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`leadscore crm ...` with this LEADSCORE_SECRET_KEY (None: unset)."""
    env = {} if key is None else {"LEADSCORE_SECRET_KEY": key}
    return without_secret("crm", *args, home=home, **env)


def rows(home: Path) -> list[dict[str, Any]]:
    """The crm_connections rows as the database file holds them."""
    database = sqlite3.connect(home / "leadscore.db")
    database.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in database.execute("SELECT * FROM crm_connections")]
    finally:
        database.close()


def test_keygen_prints_a_fresh_fernet_key(tmp_path: Path) -> None:
    made = crm(tmp_path / "home", None, "keygen")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key != new_key()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    assert not (tmp_path / "home" / "leadscore.db").exists()  # no database needed


def test_add_list_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = new_key()
    for team in ("north", "south"):
        assert without_secret("keys", "create", "--team", team, home=home).returncode == 0

    added = crm(home, key, "add", "--team", "north", "--provider", "gohighlevel",
                "--account-id", "locNorth1", "--token", "pit-north-7f3a", "--name", "Main",
                "--api-base", "http://127.0.0.1:9/ghl", "--score-field", "BcdmQEsNgz6A",
                "--tag-hot", "lead-hot", "--tag-warm", "lead-warm", "--tag-cold", "lead-cold",
                "--threshold", "3", "--map", "Kq3lTimeline0=timeline",
                "--map", "Kq3lSource0=attributes.source")  # fmt: skip
    assert added.returncode == 0, added.stderr
    ghl = json.loads(added.stdout)
    assert (ghl["team"], ghl["provider"], ghl["account_id"]) == ("north", "gohighlevel",
                                                                 "locNorth1")  # fmt: skip
    assert ghl["api_base"] == "http://127.0.0.1:9/ghl"
    assert ghl["write_back"]["score_field"] == "BcdmQEsNgz6A"
    assert ghl["write_back"]["class_tags"] == {"hot": "lead-hot", "warm": "lead-warm",
                                               "cold": "lead-cold"}  # fmt: skip
    assert ghl["write_back"]["threshold_points"] == 3
    assert ghl["field_mapping"] == {"Kq3lTimeline0": "timeline",
                                    "Kq3lSource0": "attributes.source"}  # fmt: skip
    assert ghl["has_credentials"] is True
    assert "signing_secret" not in ghl
    assert "pit-north-7f3a" not in added.stdout + added.stderr

    fub = crm(home, key, "add", "--team", "north", "--provider", "followupboss",
              "--account-id", "fub1", "--api-key", "fub-key-91c2", "--system", "LeadScore",
              "--system-key", "fub-sys-44d0")  # fmt: skip
    assert fub.returncode == 0, fub.stderr
    assert json.loads(fub.stdout)["api_base"] == "https://api.followupboss.com"

    hook = crm(home, key, "add", "--team", "south", "--provider", "webhook", "--name", "Zapier")
    assert hook.returncode == 0, hook.stderr
    webhook = json.loads(hook.stdout)
    signing = webhook["signing_secret"]
    assert len(signing) >= 32
    assert "shown this once" in hook.stderr
    assert webhook["webhook_path"] == f"/api/v1/crm/webhook/{webhook['id']}"

    # Sealed with the key the server is given: the same box opens them.
    stored = {row["id"]: row for row in rows(home)}
    assert b"pit-north-7f3a" not in stored[ghl["id"]]["credentials"]
    box = box_for(StoreSettings(secret_key=SecretStr(key)))
    assert box.open(stored[ghl["id"]]["credentials"]) == {"token": "pit-north-7f3a"}
    assert box.open(stored[webhook["id"]]["signing_secret"]) == {"secret": signing}
    assert box.open(stored[json.loads(fub.stdout)["id"]]["credentials"]) == {
        "api_key": "fub-key-91c2", "system": "LeadScore", "system_key": "fub-sys-44d0"
    }  # fmt: skip

    listed = crm(home, None, "list")  # listing opens nothing: no key needed
    assert listed.returncode == 0, listed.stderr
    header, *table = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["id", "team", "provider", "account_id", "name", "api_base",
                      "credentials", "webhook_path", "created_at"]  # fmt: skip
    assert [(r[1], r[2], r[3], r[6]) for r in table] == [
        ("north", "gohighlevel", "locNorth1", "set"),
        ("north", "followupboss", "fub1", "set"),
        ("south", "webhook", webhook["account_id"], "none"),
    ]
    for secret in ("pit-north-7f3a", "fub-key-91c2", "fub-sys-44d0", signing):
        assert secret not in listed.stdout
    south = crm(home, None, "list", "--team", "south").stdout.splitlines()
    assert [line.split("\t")[0] for line in south[1:]] == [str(webhook["id"])]

    elsewhere = crm(home, None, "remove", str(ghl["id"]), "--team", "south")
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.strip() == f"error: no CRM connection {ghl['id']} in that team"
    assert len(rows(home)) == 3
    removed = crm(home, None, "remove", str(ghl["id"]), "--team", "north")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == (
        f"connection {ghl['id']} (gohighlevel locNorth1, team north) removed"
    )
    gone = crm(home, None, "remove", str(ghl["id"]))
    assert gone.returncode == 2
    assert gone.stderr.strip() == f"error: no CRM connection {ghl['id']}"
    assert sorted(row["id"] for row in rows(home)) == sorted(
        [json.loads(fub.stdout)["id"], webhook["id"]]
    )
    # The account can be connected again once removed.
    again = crm(home, key, "add", "--team", "south", "--provider", "gohighlevel",
                "--account-id", "locNorth1", "--token", "pit-south-0b1e")  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_bad_input_is_one_clear_line_and_stores_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = new_key()
    assert without_secret("keys", "create", "--team", "north", home=home).returncode == 0
    ghl = ["add", "--team", "north", "--provider", "gohighlevel", "--account-id", "loc1"]
    first = crm(home, key, *ghl, "--token", "pit-1")
    assert first.returncode == 0, first.stderr
    cases: list[tuple[str | None, list[str], str]] = [
        (key, [*ghl, "--api-key", "k"],
         "error: credentials: credentials for gohighlevel are ['token']; got ['api_key']"),
        (key, ["add", "--team", "north", "--provider", "gohighlevel", "--token", "t"],
         "error: account_id: account_id is required for gohighlevel"),
        (key, [*ghl[:-1], "loc2", "--token", "t", "--map", "Kq3l=favourite_colour"],
         "field_mapping: field_mapping['Kq3l'] = 'favourite_colour': not a lead field"),
        (key, [*ghl[:-1], "loc2", "--token", "t", "--map", "no-equals-sign"],
         "error: --map 'no-equals-sign': write it SRC=TARGET"),
        (key, [*ghl[:-1], "loc2", "--token", "t", "--threshold", "150"],
         "error: write_back.threshold_points: Input should be less than or equal to 100"),
        (key, ["add", "--team", "west", "--provider", "gohighlevel", "--account-id", "loc2",
               "--token", "t"], "error: no team named 'west'"),
        (key, [*ghl, "--token", "pit-2"], "error: gohighlevel account 'loc1' is connected already"),
        (None, [*ghl[:-1], "loc2", "--token", "t"], "error: LEADSCORE_SECRET_KEY is not set"),
        ("not-a-fernet-key", [*ghl[:-1], "loc2", "--token", "t"],
         "error: LEADSCORE_SECRET_KEY must be Fernet keys"),
    ]  # fmt: skip
    for secret_key, args, message in cases:
        result = crm(home, secret_key, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
        assert result.stdout == ""
    assert [row["account_id"] for row in rows(home)] == ["loc1"]
    assert box_for(StoreSettings(secret_key=SecretStr(key))).open(rows(home)[0]["credentials"]) == {
        "token": "pit-1"
    }
