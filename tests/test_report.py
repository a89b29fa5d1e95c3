"""`caffegen report` on a real (tiny) sweep, and the ranking rules it relies on."""
from __future__ import annotations

import base64
import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.report.analysis import RunReport, axis_summary, group_runs, rank, verdict, why_lost
from caffegen.report.diagnose import Finding
from caffegen.report.stats import could_be_best, dunnett_critical, proportions_differ, seed_noise, wilson
from helpers import write_spec

CAFFEGEN = [sys.executable, "-m", "caffegen"]
FIXTURES = Path(__file__).parent / "fixtures"


def _run(variant, top1, loss=1.0, it=100, n=None, group=None, seed=None, findings=(), **axes):
    values = {"best_top1": top1, "final_loss": loss, "best_iter": it, "test_images": n, "grp": group, "seed": seed,
              "max_iter": 400}
    return RunReport(variant, axes, "done", "", values, findings=list(findings))


def _verdict(runs):
    ranked = rank(group_runs(runs))
    return ranked, verdict(ranked, iterations=400)


def test_the_95_percent_interval_of_a_known_count_is_wilsons():
    assert [round(x, 3) for x in wilson(0.93, 100)] == [0.863, 0.966]
    assert [round(x, 3) for x in wilson(0.5, 20)] == [0.299, 0.701]
    lo, hi = wilson(1.0, 10)
    assert round(lo, 3) == 0.722 and hi == pytest.approx(1.0)  # inside [0, 1] at the edge, unlike the normal one


def test_one_image_at_179_is_a_tie_and_the_headline_says_so():
    runs = [_run("lr0.01_poly", 0.958, n=179, base_lr=0.01, lr_policy="poly"),
            _run("lr0.01_step", 0.953, n=179, base_lr=0.01, lr_policy="step"),
            _run("lr0.1_step", 0.50, n=179, base_lr=0.1, lr_policy="step")]
    ranked, v = _verdict(runs)
    assert [x.name for x in ranked] == ["lr0.01_poly", "lr0.01_step", "lr0.1_step"]
    assert [x.label for x in ranked] == ["1", "2", "3"] and [x.name for x in v.tied] == ["lr0.01_step"]
    assert [x.tied for x in ranked] == [True, True, False]
    assert v.headline.startswith("lr0.01_poly (base_lr=0.01, lr_policy=poly) won (best test top-1 0.958 ± 0.0")
    assert "lr0.01_step is within noise of it at 179 val images per test pass" in v.headline
    assert "two-proportion z-test" in v.method
    assert why_lost(ranked[1], ranked[0]).startswith("within noise of the winner (0.005 behind)")
    assert why_lost(ranked[2], ranked[0]).startswith("0.458 behind the winner")


def test_a_separated_winner_and_a_grid_that_cannot_be_told_apart():
    ranked, v = _verdict([_run("a", 0.95, n=1000), _run("b", 0.80, n=1000), _run("c", 0.70, n=1000)])
    assert [x.label for x in ranked] == ["1", "2", "3"] and not v.tied
    assert "separated from every other variant at 1000 val images per test pass" in v.headline
    ranked, v = _verdict([_run(k, s, n=50) for k, s in zip("abcd", (0.70, 0.68, 0.66, 0.64))])
    assert [x.label for x in ranked] == ["1", "2", "3", "4"] and all(x.tied for x in ranked)
    assert v.headline.startswith("No variant is separable from a, b, c and d at 50 val images per test pass")
    assert "add repeats or val images" in v.headline


def test_repeats_are_one_variant_with_each_value_and_the_pooled_seed_noise():
    runs = [_run("lr0.1_seed0", 0.90, group="lr0.1", seed=0, base_lr=0.1),
            _run("lr0.1_seed1", 0.91, group="lr0.1", seed=1, base_lr=0.1),
            _run("lr0.01_seed0", 0.60, group="lr0.01", seed=0, base_lr=0.01),
            _run("lr0.01_seed1", 0.62, group="lr0.01", seed=1, base_lr=0.01)]
    ranked, v = _verdict(runs)
    assert [(x.name, x.best) for x in ranked] == [("lr0.1", [0.90, 0.91]), ("lr0.01", [0.60, 0.62])]
    assert ranked[0].score == pytest.approx(0.905) and v.winner is ranked[0] and not v.tied
    assert "over 2 repeats" in v.headline and "Hsu's multiple comparisons with the best" in v.method
    assert "seeds as blocks, 1 degrees of freedom" in v.method
    lo, hi = ranked[0].interval  # from the pooled seed noise: wide, with one degree of freedom
    assert lo < 0.90 and hi > 0.91
    assert proportions_differ(0.95, 1000, 0.80, 1000) and not proportions_differ(0.958, 179, 0.953, 179)


def test_dunnetts_critical_values_match_the_tables():
    """One-sided, many-to-one, 5%: Dunnett (1955)'s table (2 comparisons at 10 df: 2.15; 3 and 5 at 20 df: 2.19,
    2.39)."""
    assert dunnett_critical(1, 10) == pytest.approx(1.812, abs=2e-3)    # one comparison: Student's t
    assert dunnett_critical(2, 10) == pytest.approx(2.15, abs=0.01)
    assert dunnett_critical(3, 20) == pytest.approx(2.19, abs=0.01)
    assert dunnett_critical(5, 20) == pytest.approx(2.39, abs=0.01)


def _example() -> dict[str, dict[int, float]]:
    """The per-repeat table of a real 21-variant sweep (3 seeds, 1,000 val images): tests/fixtures."""
    rows = [r for r in csv.reader((FIXTURES / "repeats-example.csv").read_text().splitlines())
            if r and not r[0].startswith("#")]
    return {r[0]: {seed: float(v) for seed, v in enumerate(r[3:6])} for r in rows[1:]}


def test_the_pooled_blocked_test_on_a_real_sweep_separates_what_welch_could_not():
    """Welch's t on each pair's own 3 repeats (2 degrees of freedom) called 12 of these 21 variants ties of the
    winner, among them lr0.01_fixed, 0.096 behind. One seed noise for the whole sweep, the seed as a block, Hsu's
    MCB: lr0.01_fixed and every fixed-lr variant are separated; 9 could still be the best."""
    data = _example()
    noise = seed_noise(data)
    assert noise.blocked and noise.df == 40 and noise.shared and noise.sigma == pytest.approx(0.0212, abs=1e-4)
    scores = {k: sum(v.values()) / 3 for k, v in data.items()}
    bounds = could_be_best(scores, {k: 3 for k in data}, noise)
    best = [k for k, b in bounds.items() if b >= 0]
    assert len(best) == 9 and "lr0.001_poly" in best and "lr0.001_sigmoid" in best
    assert bounds["lr0.01_fixed"] < 0 and not any(k.endswith("_fixed") for k in best)
    runs = [_run(f"{k}_seed{s}", v, group=k, seed=s, base_lr=float(k[2:].split("_")[0]),
                 lr_policy=k.split("_")[1]) for k, seeds in data.items() for s, v in seeds.items()]
    ranked, v = _verdict(runs)
    assert v.winner.name == "lr0.001_poly" and len(v.tied) == 8
    assert not next(x for x in ranked if x.name == "lr0.01_fixed").tied
    assert all(x.label == str(i) for i, x in enumerate(ranked, 1))     # never "1=" for a variant not rejected
    assert v.headline.startswith("lr0.001_poly (base_lr=0.001, lr_policy=poly) won (best test top-1 0.748 ± 0.025); "
                                 "lr0.001_sigmoid, lr0.001_inv, lr0.001_multistep, lr0.01_inv and 4 more are within "
                                 "noise of it over 3 repeats: tied.")


def test_the_headline_says_when_most_runs_were_still_improving():
    improving = Finding("still-improving", "Still improving at the end", "", "")
    _, v = _verdict([_run("a", 0.9, n=500, findings=[improving]), _run("b", 0.5, n=500, findings=[improving]),
                     _run("c", 0.4, n=500)])
    assert v.headline.endswith("Most runs (2 of 3) were still improving when they stopped: the ranking measures "
                               "the first 400 iterations, not where each schedule ends up.")


def test_axis_summaries_carry_intervals_and_empty_sweeps_have_no_winner():
    variants = group_runs([_run("a", 0.2, base_lr=0.1, lr_policy="exp"), _run("b", 0.5, base_lr=0.01, lr_policy="exp"),
                           _run("c", 0.3, base_lr=0.01, lr_policy="exp")])
    (line,) = axis_summary(variants)  # one policy: no line for it
    assert line.startswith("base_lr: mean best top-1 0.01 0.400 ± 1.27") and line.endswith("(best 0.01, worst 0.1).")
    assert "no winner" in _verdict([_run("x", None)])[1].headline


def test_why_a_variant_lost_names_the_gap_and_an_early_peak():
    win = group_runs([_run("lr0.001_poly", 0.42, loss=1.58, it=400)])[0]
    lost = group_runs([RunReport("lr0.1_exp", {}, "done", "", {"best_top1": 0.152, "final_top1": 0.089, "best_iter": 150,
                                                               "last_iter": 400, "final_loss": 2.69})])[0]
    text = why_lost(lost, win)
    assert text.startswith("0.268 behind the winner")
    assert "peaked at iteration 150 (0.152) and fell back to 0.089" in text
    assert "final train loss 2.69 vs the winner's 1.58" in text
    assert why_lost(win, win) == "winner"


@pytest.mark.caffe
def test_report_of_a_real_sweep(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="r", max_iter=40, lrs="[0.01, 1000.0]", policies='["fixed", "step"]', jobs=2)
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "r"
    assert f"report: {out / 'report.html'}" in proc.stdout.replace("runs/r", str(out))

    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 5 + 4                      # lr, top-1, loss, time, heatmap + one per run
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http" not in html.replace("http-equiv", "")  # self-contained: opens offline
    assert "within noise" in html.lower() and "95%" in html
    assert "http-equiv='refresh'" not in html         # the final report does not reload itself
    for variant in ("lr0.01_fixed", "lr0.01_step", "lr1000_fixed", "lr1000_step"):
        assert variant in html
    assert html.count("<details") == 4               # a diagnosis block per run
    assert html.count("Why it lost") == 3            # every run but the winner
    assert "base_lr: mean best top-1" in html and "lr_policy: mean best top-1" in html
    assert ("Diverged" in html or "Loss exploded" in html) and "lower base_lr by 10x" in html

    with open(out / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0]["rank"] == "1" and len(table) == 4
    assert {r["status"] for r in table if r["variant"].startswith("lr1000")} == {"diverged"}
    assert table[0]["variant"].startswith("lr0.01")
    md = (out / "report.md").read_text()
    assert "![heatmap of best top-1](report/heatmap.png)" in md and (out / "report" / "heatmap.png").exists()
    assert (out / "lr0.01_step" / "curves.png").exists()

    again = subprocess.run(CAFFEGEN + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.splitlines()[0].endswith("report.html")
    missing = subprocess.run(CAFFEGEN + ["report", str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.count("caffegen: error:") == 1


@pytest.mark.caffe
def test_repeats_are_grouped_in_the_report_and_the_live_report_reloads(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="rep", max_iter=20, policies='["fixed", "step"]', jobs=2)
    spec.write_text(spec.read_text().replace("[grid]", "[grid]\nrepeats = 2"))
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "rep"
    assert "report: " + str(out / "report.html") in proc.stderr.replace("runs/rep", str(out))  # said at the start
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("lr")) == [
        "lr0.01_fixed_seed0", "lr0.01_fixed_seed1", "lr0.01_step_seed0", "lr0.01_step_seed1"]
    for name in ("lr0.01_fixed_seed1", "lr0.01_step_seed1"):
        assert "random_seed: 1" in (out / name / "solver.prototxt").read_text()
    with open(out / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in table) == ["lr0.01_fixed", "lr0.01_step"]  # 2 rows, not 4
    for row in table:
        assert row["repeats"] == "2" and len(row["best_top1_each"].split(", ")) == 2
        assert "random_seed" not in row  # a seed is not a hyperparameter to rank
    html = (out / "report.html").read_text()
    assert html.count("<details") == 4 and "over 2 repeats" in html.replace("Welch's t-test on the best top-1 of 2 "
                                                                          "repeats", "over 2 repeats")
    from caffegen.report import write_report

    write_report(out, live=True)
    assert "http-equiv='refresh'" in (out / "report.html").read_text()
    write_report(out)
    assert "http-equiv='refresh'" not in (out / "report.html").read_text()


def test_a_loss_metric_ranks_the_lowest_first():
    runs = [_run("low", 0.40, base_lr=0.01), _run("high", 1.10, base_lr=0.1), _run("mid", 0.70, base_lr=0.001)]
    ranked = rank(group_runs(runs, maximize=False))
    v = verdict(ranked, metric="loss")
    assert [x.name for x in ranked] == ["low", "mid", "high"] and v.winner.name == "low"
    assert "best test loss 0.400" in v.headline
    assert why_lost(ranked[2], ranked[0]).startswith("0.700 behind the winner")
    assert axis_summary(ranked, metric="loss")[0] == ("base_lr: mean best loss 0.01 0.400, 0.001 0.700, 0.1 1.100 "
                                                      "(best 0.01, worst 0.1).")


LOSS_SPEC = """
[search]
sampler = "grid"
pruner = "median"
[run]
metric = "loss"
"""


@pytest.mark.caffe
def test_a_sweep_ranked_by_a_loss_metric_puts_the_lowest_loss_first_everywhere(tmp_path, caffe_install):
    """[run] metric = "loss": the study minimises it, the report and summary.csv rank the lowest test loss first."""
    import optuna

    from caffegen.logs import parse_log

    spec = write_spec(tmp_path, name="lm", max_iter=40, test_interval=10, lrs="[0.0001, 0.05]", policies='["fixed"]',
                      jobs=2)
    spec.write_text(spec.read_text().replace("[run]\n", "").replace("jobs = 2\n", "") + LOSS_SPEC + "jobs = 2\n")
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "lm"
    lowest = {name: min(v for _, v in parse_log(out / name / "train.log").test.series("loss"))
              for name in ("lr0.0001_fixed", "lr0.05_fixed")}
    order = sorted(lowest, key=lowest.get)
    with open(out / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [row["variant"] for row in table] == order and table[0]["rank"] == "1"
    assert [float(row["best_top1"]) for row in table] == pytest.approx([lowest[n] for n in order])
    study = optuna.load_study(study_name="lm", storage=f"sqlite:///{out / 'sweep.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert {t.user_attrs["variant"]: t.value for t in study.get_trials()} == pytest.approx(lowest)
    assert f"{order[0]} (base_lr=" in (out / "report.md").read_text() and "best test loss" in \
        (out / "report.md").read_text()
