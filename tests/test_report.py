"""`caffegen report` on a real (tiny) sweep, and the ranking rules it relies on."""
from __future__ import annotations

import base64
import csv
import re
import subprocess
import sys

import pytest

from caffegen.report.analysis import RunReport, axis_summary, rank, why_lost, winner_sentence
from conftest import write_spec

CAFFEGEN = [sys.executable, "-m", "caffegen"]


def _run(variant, top1, loss=1.0, it=100, **axes):
    return RunReport(variant, axes, "done", "", {"best_top1": top1, "final_loss": loss, "best_iter": it})


def test_ranking_puts_the_best_top1_first_and_states_the_margin():
    runs = [_run("lr0.1_fixed", 0.40, base_lr=0.1), _run("lr0.01_step", 0.55, base_lr=0.01),
            _run("lr10_fixed", None, loss=None, base_lr=10.0), _run("lr0.01_exp", 0.50, base_lr=0.01)]
    ranked = rank(runs)
    assert [r.variant for r in ranked] == ["lr0.01_step", "lr0.01_exp", "lr0.1_fixed", "lr10_fixed"]
    sentence = winner_sentence(ranked)
    assert sentence.startswith("lr0.01_step (base_lr=0.01) won with best test top-1 0.550 at iteration 100")
    assert "0.050 ahead of the runner-up lr0.01_exp (0.500)" in sentence


def test_why_a_run_lost_names_the_gap_and_an_early_peak():
    win = _run("lr0.001_poly", 0.42, loss=1.58, it=400)
    lost = RunReport("lr0.1_exp", {}, "done", "", {"best_top1": 0.152, "final_top1": 0.089, "best_iter": 150,
                                                     "last_iter": 400, "final_loss": 2.69})
    text = why_lost(lost, win)
    assert text.startswith("0.268 behind the winner")
    assert "peaked at iteration 150 (0.152) and fell back to 0.089" in text
    assert "final train loss 2.69 vs the winner's 1.58" in text
    assert why_lost(win, win) == "winner"
    lines = axis_summary([_run("a", 0.2, base_lr=0.1, lr_policy="exp"), _run("b", 0.5, base_lr=0.01, lr_policy="exp"),
                          _run("c", 0.3, base_lr=0.01, lr_policy="exp")])
    assert lines == ["base_lr: mean best top-1 0.01 0.400, 0.1 0.200 (best 0.01, worst 0.1)."]  # one policy: no line


def test_ties_and_empty_sweeps_are_said_plainly():
    tie = rank([_run("a", 0.5, loss=2.0), _run("b", 0.5, loss=1.0)])
    assert tie[0].variant == "b" and "tied with a" in winner_sentence(tie)
    assert "no winner" in winner_sentence(rank([_run("x", None)]))


@pytest.mark.caffe
def test_report_of_a_real_sweep(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="r", max_iter=40, lrs="[0.01, 1000.0]", policies='["fixed", "step"]', jobs=2)
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "r"
    assert f"report: {out / 'report.html'}" in proc.stdout.replace("runs/r", str(out))

    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 2 + 4                      # overlay + heatmap + one per run
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http" not in html.replace("http-equiv", "")  # self-contained: opens offline
    assert "won with best test top-1" in html
    for variant in ("lr0.01_fixed", "lr0.01_step", "lr1000_fixed", "lr1000_step"):
        assert variant in html
    assert html.count("<details") == 4               # a diagnosis block per run
    assert html.count("Why it lost") == 3            # every run but the winner
    assert "base_lr: mean best top-1" in html and "lr_policy: mean best top-1" in html
    assert ("Diverged" in html or "Loss exploded" in html) and "lower base_lr by 10x" in html

    with open(out / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["rank"] for r in table] == ["1", "2", "3", "4"]
    assert {r["status"] for r in table if r["variant"].startswith("lr1000")} == {"diverged"}
    assert table[0]["variant"].startswith("lr0.01")
    md = (out / "report.md").read_text()
    assert "![best top-1 heatmap](report/heatmap.png)" in md and (out / "report" / "heatmap.png").exists()
    assert (out / "lr0.01_step" / "curves.png").exists()

    again = subprocess.run(CAFFEGEN + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.splitlines()[0].endswith("report.html")
    missing = subprocess.run(CAFFEGEN + ["report", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("caffegen: error:") == 1
