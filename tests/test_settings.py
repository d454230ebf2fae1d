"""Settings (§17): unknown ABAXUS_* variables refused at start, secrets never in the repr."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from abaxus.settings import OTHER_PROGRAMS_VARIABLES, Settings, SettingsError

REPO = Path(__file__).resolve().parent.parent
# Where the repository names variables: code, tests, benchmarks, deployment, CI, docs.
SOURCES = ["README.md", ".ci", "api", "benchmarks", "billing", "cli", "core", "deploy", "pipeline", "rating",
           "schemas", "sdk", "store", "tests"]
NAME = re.compile(r"\bABAXUS_[A-Z0-9_]*[A-Z0-9]\b")
TYPO = "ABAXUS_DEDUP_WINDOW" + "S"  # spelled apart so the scan below does not find it in this file
REFUSAL = f"{TYPO} is not an Abaxus setting; unset it or use one of: "

SECRETS = {"bootstrap_key": "sk_test_" + "s" * 40, "stripe_secret_key": "sk_test_stripesecret",
           "stripe_webhook_secret": "whsec_hooksecret"}


def _mentioned() -> set[str]:
    names: set[str] = set()
    for top in SOURCES:
        root = REPO / top
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
        for path in files:
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".so", ".sqlite3"):
                continue
            names.update(NAME.findall(path.read_text(errors="replace")))
    return names


def _known_listed() -> list[str]:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({TYPO: "1d"})
    message = str(refused.value)
    assert message.startswith(REFUSAL)
    assert message.endswith(".")
    return message[len(REFUSAL):-1].split(", ")


def test_an_unknown_abaxus_variable_fails_at_start_naming_it_and_the_known_ones():
    listed = _known_listed()
    assert listed == sorted(listed)
    assert {"ABAXUS_DEDUP_WINDOW", "ABAXUS_EPOCH_SECONDS", "ABAXUS_INTAKE_MAX_BACKLOG", "ABAXUS_INTAKE_MAX_LAG",
            "ABAXUS_BOOTSTRAP_KEY", "ABAXUS_DATABASE_URL", "ABAXUS_CLICKHOUSE_URL"} <= set(listed)
    assert not set(listed) & OTHER_PROGRAMS_VARIABLES


def test_every_abaxus_variable_the_repository_names_is_a_setting_or_another_programs():
    """So none that a README, test, benchmark, deployment or CI step sets is refused, and none
    that they document is missing."""
    mentioned = _mentioned()
    assert {"ABAXUS_TEST_PG", "ABAXUS_CI_VENV", "ABAXUS_API_KEY", "ABAXUS_BASE_URL"} <= mentioned  # the scan works
    assert _known_listed() == sorted(mentioned - OTHER_PROGRAMS_VARIABLES)
    assert mentioned >= OTHER_PROGRAMS_VARIABLES  # no stale entry


def test_other_programs_variables_are_ignored():
    env = {"ABAXUS_API_KEY": "sk_test_client", "ABAXUS_BASE_URL": "http://127.0.0.1:1", "ABAXUS_TEST_PG": "postgresql://x",
           "ABAXUS_CI_VENV": "/tmp/venv", "PATH": "/usr/bin", "ABAXUSX": "not our prefix"}
    assert Settings.from_env(env) == Settings()


def test_a_bad_value_is_still_named_before_an_unknown_name():
    with pytest.raises(SettingsError, match=r"^ABAXUS_PORT must be a whole number ≥ 1, got 'http'\.$"):
        Settings.from_env({"ABAXUS_PORT": "http", TYPO: "1d"})


def test_the_repr_masks_secrets_and_url_passwords_and_shows_everything_else():
    s = Settings(**SECRETS, database_url="postgresql+psycopg://abaxus:pg%2Fpass@db:5432/abaxus",
                 clickhouse_url="http://default:chpass@ch:8123/?database=abaxus&password=chquery", port=9000)
    text = repr(s)
    assert str(s) == text
    assert [secret for secret in ("ssssssss", "stripesecret", "hooksecret", "pg%2Fpass", "chpass", "chquery")
            if secret in text] == []
    shown = set(re.split(r"(?:^Settings\(|, |\)$)", text)) - {""}
    assert {"bootstrap_key='***'", "stripe_secret_key='***'", "stripe_webhook_secret='***'",
            "database_url='postgresql+psycopg://abaxus:***@db:5432/abaxus'",
            "clickhouse_url='http://default:***@ch:8123/?database=abaxus&password=***'",
            "port=9000", "stripe_api_base='https://api.stripe.com'"} <= shown
    assert re.findall(r"(?:^Settings\(|, )(\w+)=", text) == [f.name for f in fields(s)]  # every field, in order


def test_the_repr_of_unset_secrets_says_none_and_a_url_without_password_is_shown_whole():
    text = repr(Settings(database_url="postgresql://abaxus@db/abaxus", clickhouse_url="chdb:///var/lib/abaxus"))
    shown = set(re.split(r"(?:^Settings\(|, |\)$)", text)) - {""}
    assert {"bootstrap_key=None", "stripe_secret_key=None", "stripe_webhook_secret=None",
            "database_url='postgresql://abaxus@db/abaxus'", "clickhouse_url='chdb:///var/lib/abaxus'"} <= shown


def test_a_url_that_cannot_be_taken_apart_is_hidden_whole():
    assert "database_url='***'" in repr(Settings(database_url="postgresql://user:pw@[::1/db"))
