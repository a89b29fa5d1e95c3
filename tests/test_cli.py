"""The `caffegen` entry point: every stage listed, bad usage is one line and exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from caffegen.cli import COMMANDS

CAFFEGEN = [sys.executable, "-m", "caffegen"]


def test_help_lists_every_stage_and_every_command_imports():
    out = subprocess.run(CAFFEGEN + ["--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in out.stdout
    for name in COMMANDS:  # each lazily imported command exists and has a help text
        proc = subprocess.run(CAFFEGEN + [name, "--help"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "Usage: caffegen" in proc.stdout, (name, proc.stderr)


@pytest.mark.parametrize("argv, words", [
    (["sweeep"], "No such command"),
    (["sweep", "--jobs", "0"], "--jobs"),
    (["render"], "--lr"),
    (["schedule", "--lr", "0.01", "--max-iter", "x"], "max"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, words):
    proc = subprocess.run(CAFFEGEN + argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("caffegen: error:") and words in lines[0], proc.stderr
