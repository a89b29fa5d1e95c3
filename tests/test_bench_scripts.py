"""The benchmark scripts of the tuner's proof refuse bad input in one line with exit 2: an unknown problem, a
missing table, a table another caffegen version recorded."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("path", ["bench/tune/run.py", "bench/tables/record.py"])
def test_an_unknown_problem_is_one_line(path):
    assert "no problem 'mnist': the problems are digits, textures, demo" in one_line(script(path, "--problem", "mnist"))


def test_a_missing_table_and_one_of_another_version_are_one_line(tmp_path):
    assert "no such table" in one_line(script("bench/tune/run.py", "--problem", "digits", "--tables", tmp_path))
    from caffegen.tune.table import CurveTable, save_table

    save_table(CurveTable({"name": "digits", "iters": 10, "search_iters": 5}, {"caffegen": "0.0.1"}, []),
               tmp_path / "digits.json.gz")
    line = one_line(script("bench/tune/run.py", "--problem", "digits", "--tables", tmp_path))
    assert "recorded by caffegen 0.0.1" in line and "record it again" in line
    (tmp_path / "digits.json.gz").write_bytes(b"not gzip")
    assert "not a curve table" in one_line(script("bench/tune/run.py", "--problem", "digits", "--tables", tmp_path))


def test_the_recorder_refuses_a_partial_table_of_another_version_in_one_line(tmp_path):
    from caffegen.tune.table import CurveTable, save_table

    save_table(CurveTable({}, {"caffegen": "0.0.1"}, []), tmp_path / "textures.partial.json.gz")
    line = one_line(script("bench/tables/record.py", "--problem", "textures", "--tables", tmp_path,
                           "--work", tmp_path / "work"))
    assert "textures.partial.json.gz: recorded by caffegen 0.0.1" in line
    assert not (tmp_path / "work" / "problem-textures").exists()       # refused before anything was made
