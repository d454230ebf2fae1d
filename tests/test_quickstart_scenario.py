"""The full Quick Start volume through the real HTTP API and dataflow (slow: run with -m slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from abaxus.cli.quickstart import run_quickstart


def _check(invoice: dict) -> None:  # type: ignore[type-arg]
    usage, fee = invoice["line_items"]
    assert (usage["quantity"], usage["amount"], usage["event_count"]) == (1200000, 10000, 1200000)
    assert [t["amount"] for t in usage["tier_breakdown"]] == [0, 9000, 1000]
    assert fee["amount"] == 4900
    assert invoice["total_amount"] == 14900


@pytest.mark.slow
def test_quickstart_with_1_2_million_events_bills_14900(tmp_path: Path):
    _check(run_quickstart(tmp_path / "qs", 1_200_000))


def test_quickstart_command_prints_the_invoice(tmp_path: Path):
    """A small run of ``abaxus quickstart`` as a user would start it (fewer events, same code path)."""
    out = subprocess.run([sys.executable, "-m", "abaxus.cli", "quickstart", "--events", "3000",
                          "--data-dir", str(tmp_path / "q")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "total_amount = 4900" in out.stdout
    assert "Growth base fee" in out.stdout
