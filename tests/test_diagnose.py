"""Each diagnosis rule fires on the real Caffe log recorded to show it (see fixtures/logs/README.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from caffegen.report.diagnose import Thresholds, diagnose, metric_roles
from caffegen.logs import parse_log

LOGS = Path(__file__).parent / "fixtures" / "logs"


def codes(name: str, **kw) -> list[str]:
    return [f.code for f in diagnose(parse_log(LOGS / f"{name}.log"), **kw)]


def test_lr_1000_run_is_diverged_and_told_to_lower_lr_10x():
    findings = diagnose(parse_log(LOGS / "diverged.log"))
    assert findings[0].code == "diverged"
    assert "iteration 15" in findings[0].detail and "10x" in findings[0].advice


def test_lr_1e7_run_is_stalled_and_told_to_raise_lr():
    findings = diagnose(parse_log(LOGS / "stalled.log"))
    assert [f.code for f in findings] == ["stalled"]
    assert "raise base_lr by 10x" in findings[0].advice


def test_short_learnable_run_is_still_improving():
    findings = diagnose(parse_log(LOGS / "still_improving.log"), max_iter=60)
    assert [f.code for f in findings] == ["still-improving"]
    assert "max_iter 60" in findings[0].detail


def test_memorised_noise_is_overfitting():
    findings = diagnose(parse_log(LOGS / "overfitting.log"))
    assert "overfitting" in [f.code for f in findings]
    advice = next(f.advice for f in findings if f.code == "overfitting")
    assert "dropout" in advice and "weight decay" in advice


def test_multistep_lr_jump_after_plateau_is_a_late_jump():
    assert "late-jump" in codes("late_jump")


def test_late_jump_threshold_is_honoured():
    # the recorded jump is 0.167 -> 0.333 in one test: ask for a bigger jump and the rule stays quiet
    strict = Thresholds(jump_delta=0.9)
    assert "late-jump" not in codes("late_jump", thresholds=strict)


def test_stalled_threshold_is_honoured():
    assert "stalled" not in codes("stalled", thresholds=Thresholds(stall_rel_change=-1.0))


def test_crash_is_reported_first():
    assert codes("fatal")[0] == "crashed"


def test_resumed_healthy_run_is_healthy():
    assert codes("resumed") == ["healthy"]


def test_rules_do_not_fire_on_the_other_logs():
    assert "diverged" not in codes("still_improving") + codes("late_jump") + codes("overfitting")
    assert "overfitting" not in codes("still_improving") + codes("stalled") + codes("late_jump")
    assert "late-jump" not in codes("still_improving") + codes("stalled") + codes("two_test_nets")
    assert "stalled" not in codes("still_improving") + codes("late_jump") + codes("overfitting")


@pytest.mark.parametrize("name,top1,top5", [("late_jump", "accuracy_at_1", "accuracy_at_5")])
def test_metric_roles(name, top1, top5):
    roles = metric_roles(parse_log(LOGS / f"{name}.log"))
    assert (roles["top1"], roles["top5"], roles["test_loss"], roles["train_loss"]) == (top1, top5, "loss", "loss")


def test_metric_roles_nvcaffe_names():
    roles = metric_roles(parse_log(LOGS / "handmade" / "nvcaffe.log"))
    assert roles["top1"] == "accuracy/top-1" and roles["top5"] == "accuracy/top-5"
