"""The log parser: every dialect, nan kept, parse_log.py's rows reproduced, never a crash."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caffegen.logs import LogFollower, parse_log, write_outputs

LOGS = Path(__file__).parent / "fixtures" / "logs"
HANDMADE = LOGS / "handmade"
REAL = sorted(LOGS.glob("*.log"))


def same(a, b) -> bool:
    """Equal floats, nan equal to nan."""
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def strip_year(src: Path, dst: Path) -> Path:
    """The glog < 0.6 form of a real log: ``I20261123 ...`` -> ``I1123 ...``."""
    dst.write_text(re.sub(r"^([IWEF])\d{4}(\d{4} )", r"\1\2", src.read_text(), flags=re.M))
    return dst


def caffe_parse_log(log: Path, tmp: Path) -> tuple[list[dict], list[dict]]:
    """Run Caffe's own tools/extra/parse_log.py on ``log``.

    It is Python 2 code: one ``print 'Wrote %s'`` statement fails under Python 3, so a copy with that
    single line turned into a function call runs from a temp dir; the cache is left untouched.
    """
    from caffegen.toolchain.upstream import caffe_tools_extra

    extra = caffe_tools_extra()
    work = tmp / "caffe_tools"
    work.mkdir(exist_ok=True)
    (work / "extract_seconds.py").write_text((extra / "extract_seconds.py").read_text())
    code = (extra / "parse_log.py").read_text().replace("print 'Wrote %s' % output_filename",
                                                         "print('Wrote %s' % output_filename)")
    (work / "parse_log.py").write_text(code)
    out = tmp / "caffe_out"
    out.mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(work / "parse_log.py"), str(log), str(out)], check=True,
                   capture_output=True, text=True, timeout=300)
    tables = []
    for suffix in ("train", "test"):
        with open(out / f"{log.name}.{suffix}") as fh:
            tables.append([{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)])
    return tables[0], tables[1]


@pytest.mark.parametrize("name", ["still_improving", "late_jump", "overfitting", "stalled"])
def test_rows_equal_caffe_parse_log_py(name, tmp_path):
    log = strip_year(LOGS / f"{name}.log", tmp_path / f"{name}.log")
    ours = parse_log(log)
    train, test = caffe_parse_log(log, tmp_path)
    assert len(train) > 5 and len(test) > 3
    for mine, theirs in ((ours.train, train), (ours.test, test)):
        assert len(mine.rows) == len(theirs)
        assert mine.columns == list(theirs[0])
        for a, b in zip(mine.rows, theirs):
            assert all(same(float(a[k]), b[k]) for k in b), (a, b)


def test_year_prefix_and_yearless_prefix_give_the_same_rows(tmp_path):
    with_year = parse_log(LOGS / "late_jump.log")
    without = parse_log(strip_year(LOGS / "late_jump.log", tmp_path / "x.log"), year=2026)
    assert with_year.train.rows == without.train.rows
    assert with_year.test.rows == without.test.rows


def test_diverged_run_keeps_its_nan_rows(tmp_path):
    curves = parse_log(LOGS / "diverged.log")
    losses = curves.train.column("loss")
    assert curves.nonfinite
    assert any(math.isnan(v) for v in losses) and math.isfinite(losses[0])
    assert [r["NumIters"] for r in curves.train.rows] == list(range(0, 60, 5))
    train_csv, test_csv, js = write_outputs(curves, LOGS / "diverged.log", tmp_path)
    assert (train_csv.name, test_csv.name, js.name) == ("diverged.log.train", "diverged.log.test",
                                                         "diverged.log.json")
    assert ",nan" in train_csv.read_text()


def test_two_test_nets_get_their_own_columns():
    curves = parse_log(LOGS / "two_test_nets.log")
    assert curves.test.columns == ["NumIters", "Seconds", "LearningRate", "accuracy_at_1", "accuracy_at_5",
                                   "loss", "accuracy_at_1@net1", "accuracy_at_5@net1", "loss@net1"]
    # both nets test the same val set: same numbers, one row per test pass
    for row in curves.test.rows:
        assert row["loss"] == row["loss@net1"]
    assert [r["NumIters"] for r in curves.test.rows] == [0, 10, 20, 30]


def test_resumed_run_keeps_both_segments_and_resolves_later_rows():
    curves = parse_log(LOGS / "resumed.log")
    assert curves.segments == 2
    assert curves.train.columns[-1] == "Segment"
    iters = [(r["NumIters"], r["Segment"]) for r in curves.train.rows]
    assert iters[:6] == [(0, 0), (2, 0), (4, 0), (6, 0), (8, 0), (10, 0)]
    assert (10, 1) in iters  # the resumed run logs iteration 10 again
    resolved = curves.resolved()
    its = [r["NumIters"] for r in resolved.train.rows]
    assert its == sorted(set(its))
    later = [r for r in curves.train.rows if r["NumIters"] == 12][-1]
    assert resolved.train.rows[its.index(12)]["loss"] == later["loss"]


def test_fatal_line_is_reported():
    curves = parse_log(LOGS / "fatal.log")
    assert curves.fatal_line.startswith("F") and "Unknown bottom blob 'ip3'" in curves.fatal_line
    assert len(curves.train) == 0


def test_bvlc_master_dialect_with_year_rollover_stray_line_and_truncated_tail():
    curves = parse_log(HANDMADE / "bvlc_master.log", year=2025)
    assert [r["NumIters"] for r in curves.train.rows] == [0, 100, 200]
    assert curves.max_iter_seen == 300 and curves.last_loss == 0.1
    assert curves.train.rows[2]["loss"] == -math.inf
    assert curves.test.rows[1]["accuracy"] == math.inf
    # Dec 31 23:59:58.1 -> Jan 1 00:00:01.4: 3.3 s, not minus a year
    assert curves.train.rows[1]["Seconds"] == pytest.approx(3.3001)
    assert curves.truncated_tail.endswith("loss = 0.09")  # the cut line is not read as a row


def test_nvcaffe_dialect():
    curves = parse_log(HANDMADE / "nvcaffe.log")
    assert [(r["NumIters"], r["loss"], r["LearningRate"]) for r in curves.train.rows] == [(0, 6.95, 0.1),
                                                                                          (100, 6.4, 0.1)]
    assert curves.test.metrics() == ["accuracy/top-1", "accuracy/top-5", "loss"]
    assert curves.last_loss == 6.5 and curves.seconds == pytest.approx(123.1)


def test_old_test_score_dialect_uses_the_loss_lines():
    curves = parse_log(HANDMADE / "old_test_score.log")
    assert curves.test.metrics() == ["score_0", "score_1"]
    assert math.isnan(curves.test.rows[1]["score_1"])
    assert curves.train.columns[-1] == "loss" and math.isnan(curves.train.rows[-1]["loss"])


@pytest.mark.parametrize("log", REAL + sorted(HANDMADE.glob("*.log")), ids=lambda p: p.name)
def test_log_follower_sees_what_parse_log_sees(log):
    follower = LogFollower(year=2025)
    with open(log) as fh:
        for line in fh:
            follower.feed(line)
    whole = parse_log(log, year=2025)
    live = follower.curves()
    if whole.truncated_tail:  # the follower was handed the cut line too
        live.train.rows = live.train.rows[:len(whole.train.rows)]
    assert live.test.rows == whole.test.rows or _nan_equal(live.test.rows, whole.test.rows)
    assert _nan_equal(live.train.rows[:len(whole.train.rows)], whole.train.rows)
    assert follower.max_iter_seen == whole.max_iter_seen
    assert follower.fatal_line == whole.fatal_line


def _nan_equal(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(same(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_log_follower_live_properties():
    follower = LogFollower()
    for line in (LOGS / "late_jump.log").read_text().splitlines():
        follower.feed(line)
    assert follower.iteration == 240 and follower.max_iter_seen == 240
    assert follower.first_loss == pytest.approx(2.0129)
    assert follower.last_lr == pytest.approx(0.01)
    hist = follower.test_history("accuracy_at_1")
    assert hist[0][0] == 0 and hist[-1][0] == 240 and len(hist) == 17
    best, at = follower.best_test("accuracy_at_1")
    assert best == max(v for _, v in hist) and at == next(i for i, v in hist if v == best)
    assert follower.best_test("loss")[0] == min(v for _, v in follower.test_history("loss"))
    assert set(follower.last_test) == {"accuracy_at_1", "accuracy_at_5", "loss"}
    assert follower.seconds > 0 and not follower.nonfinite and follower.fatal_line is None

    diverging = LogFollower()
    for line in (LOGS / "diverged.log").read_text().splitlines():
        diverging.feed(line)
    assert diverging.nonfinite and math.isnan(diverging.last_loss)


def test_a_log_cut_anywhere_gives_a_prefix_of_the_rows():
    text = (LOGS / "still_improving.log").read_text()
    full = parse_log(text.splitlines(keepends=True))
    for cut in range(len(text) - 3000, len(text), 37):
        part = parse_log(text[:cut].splitlines(keepends=True)[:-1])  # the cut line dropped, as for a file
        n = len(part.train.rows)
        assert part.train.rows[:n - 1] == full.train.rows[:n - 1]


def test_missing_file_is_a_one_line_input_error(tmp_path):
    from caffegen.errors import InputError

    with pytest.raises(InputError, match="no such log file"):
        parse_log(tmp_path / "nope.log")


LINES = [line for log in REAL for line in log.read_text().splitlines()[:80]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=120), st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
                          st.sampled_from(LINES)), max_size=40))
def test_never_raises_on_arbitrary_lines(lines):
    curves = parse_log(lines)
    follower = LogFollower()
    for line in lines:
        follower.feed(line)
    assert len(curves.train) == len(follower.curves().train)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINES), st.integers(0, 200), st.text(max_size=8)), min_size=1,
                max_size=30))
def test_never_raises_on_mutated_real_lines(edits):
    lines = [line[:pos] + junk + line[pos + len(junk):] for line, pos, junk in edits]
    curves = parse_log(lines)
    follower = LogFollower()
    for line in lines:
        follower.feed(line)
    assert len(curves.train) == len(follower.curves().train) and len(curves.test) == len(follower.curves().test)
    assert all(isinstance(v, float) for v in follower.last_test.values())
    best = follower.best_test("loss")
    assert best is None or (best[0] == min(v for _, v in follower.test_history("loss") if math.isfinite(v)) and best[1] >= 0)


def test_cli_parse_writes_csvs_and_prints_a_summary(tmp_path):
    from click.testing import CliRunner

    from caffegen.cli import cli

    result = CliRunner().invoke(cli, ["parse", str(LOGS / "still_improving.log"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "accuracy_at_1: final" in result.output and "best" in result.output
    with open(tmp_path / "still_improving.log.test") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["NumIters", "Seconds", "LearningRate"] and len(rows) == 7


def test_cli_parse_missing_log_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "caffegen", "parse", str(tmp_path / "none.log")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("caffegen: error: no log at")


@pytest.mark.parametrize("command", ["parse", "plot"])
def test_cli_refuses_a_file_that_is_not_a_caffe_log(command, tmp_path):
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(bytes(range(256)) * 4)
    proc = subprocess.run([sys.executable, "-m", "caffegen", command, str(junk)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("caffegen: error:") == 1 and "not a Caffe log" in proc.stderr
    assert list(tmp_path.iterdir()) == [junk]   # nothing written


def test_cli_parse_accepts_a_log_cut_before_its_first_iteration(tmp_path):
    head = [ln for ln in (LOGS / "still_improving.log").read_text().splitlines(keepends=True)[:40]
            if "Iteration" not in ln]
    log = tmp_path / "just_started.log"
    log.write_text("".join(head))
    proc = subprocess.run([sys.executable, "-m", "caffegen", "parse", str(log)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 train rows" in proc.stdout


# ------------------------------------------------------- the lr of a display block that prints none
NVCAFFE_NO_FIRST_LR = """\
I20260314 10:00:00.000000  3001 solver.cpp:412] Solving ResNet-50
I20260314 10:00:02.000000  3001 solver.cpp:376] Iteration 0 (0.9 s), loss = 6.95
I20260314 10:00:02.000100  3001 solver.cpp:393]     Train net output #0: loss = 6.95 (* 1 = 6.95 loss)
I20260314 10:01:02.000000  3001 solver.cpp:371] Iteration 100 (1.66 iter/s, 60s/100 iter), 0.2/90ep, loss = 6.5
I20260314 10:01:02.000100  3001 solver.cpp:393]     Train net output #0: loss = 6.4 (* 1 = 6.4 loss)
I20260314 10:01:02.000200  3001 sgd_solver.cpp:172] Iteration 100, lr = 0.0999, m = 0.9, wd = 0.0001, gs = 1
I20260314 10:02:02.000000  3001 solver.cpp:371] Iteration 200 (1.66 iter/s, 60s/100 iter), 0.4/90ep, loss = 6.2
I20260314 10:02:02.000100  3001 solver.cpp:393]     Train net output #0: loss = 6.1 (* 1 = 6.1 loss)
I20260314 10:02:02.000200  3001 sgd_solver.cpp:172] Iteration 200, lr = 0.0998, m = 0.9, wd = 0.0001, gs = 1
I20260314 10:03:02.000000  3001 solver.cpp:371] Iteration 300 (1.66 iter/s, 60s/100 iter), 0.6/90ep, loss = 6.0
I20260314 10:03:02.000100  3001 solver.cpp:393]     Train net output #0: loss = 5.9 (* 1 = 5.9 loss)
I20260314 10:03:02.000200  3001 sgd_solver.cpp:172] Iteration 300, lr = 0.0997, m = 0.9, wd = 0.0001, gs = 1
"""


@pytest.mark.parametrize("engine", ["lines", "native"])
def test_a_display_block_without_an_lr_line_does_not_cost_the_next_block_its_lr(engine, tmp_path):
    """NVCaffe's first display prints no ``lr =``: the rows after it still get theirs (it was nan for the second
    row too), and the first row takes the second's, as parse_log.py fills a leading unknown."""
    if engine == "native":
        _native_lib()
    log = tmp_path / "nv.log"
    log.write_text(NVCAFFE_NO_FIRST_LR)
    curves = parse_log(log, engine=engine)
    assert curves.engine == engine
    assert [(r["NumIters"], r["LearningRate"]) for r in curves.train.rows] == [
        (0, 0.0999), (100, 0.0999), (200, 0.0999), (300, 0.0998)]
    follower = LogFollower()
    for line in NVCAFFE_NO_FIRST_LR.splitlines():
        follower.feed(line)
    assert follower.curves().train.column("LearningRate")[1:] == [0.0999, 0.0999, 0.0998]


# ---------------------------------------------------------------- the two engines read alike
def lines_engine(source, **kw):
    return parse_log(source, engine="lines", **kw)


def _same_curves(a, b) -> bool:
    return (list(a.train.columns) == list(b.train.columns) and list(a.test.columns) == list(b.test.columns)
            and _nan_equal(a.train.rows, b.train.rows) and _nan_equal(a.test.rows, b.test.rows)
            and a.segments == b.segments and a.max_iter_seen == b.max_iter_seen
            and a.fatal_line == b.fatal_line and a.truncated_tail == b.truncated_tail
            and same(a.last_loss, b.last_loss) and same(a.first_loss, b.first_loss)
            and a.nonfinite == b.nonfinite and same(a.seconds, b.seconds) and _same_pairs(a.loss_log, b.loss_log))


def _same_pairs(a, b) -> bool:
    return len(a) == len(b) and all(i == j and same(u, v) for (i, u), (j, v) in zip(a, b))


def _repeated_real_log(copies: int) -> str:
    """The real two-test-net log with its training part repeated ``copies`` times at increasing iterations
    (as bench/parse builds its big log)."""
    lines = (LOGS / "two_test_nets.log").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "Solving " in line) + 1
    body = "".join(line for line in lines[start:] if "Optimization Done" not in line)
    parts = ["".join(lines[:start])]
    for k in range(copies):
        parts.append(re.sub(r"Iteration (\d+)", lambda m: f"Iteration {int(m.group(1)) + 31 * k}", body))
    return "".join(parts)


def test_a_big_log_reads_the_same_in_1_mb_chunks_as_line_by_line(tmp_path):
    """3 MB through the reference (read in 1 MB chunks, so lines straddle chunk edges) and through the follower
    (one line at a time): the same rows."""
    log = tmp_path / "big.log"
    log.write_text(_repeated_real_log(250))
    whole = lines_engine(log)
    follower = LogFollower()
    with open(log) as fh:
        for line in fh:
            follower.feed(line)
    live = follower.curves()
    assert len(whole.train) == 250 * 30 and whole.engine == "lines"
    assert _nan_equal(live.train.rows, whole.train.rows) and _nan_equal(live.test.rows, whole.test.rows)
    assert whole.test.columns[-1] == "loss@net1" and whole.test.rows[-1]["NumIters"] == 249 * 31 + 30


def _native_lib():
    """The native scanner library, or a skip (with the reason) where this machine cannot build it."""
    from caffegen.logs import native

    if shutil.which((os.environ.get("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler (cc / $CC): the native scanner cannot be built here")
    lib = native.load()
    assert lib is not None, native.last_error  # a compiler exists: the build must work
    return lib


def native_engine(log, **kw):
    """parse_log with the native scanner offered the file (whatever its size); the curves say who read it."""
    _native_lib()
    return parse_log(log, engine="native", **kw)


DECLINED = {"fatal.log", "bvlc_master.log", "old_test_score.log"}  # fatal, year roll-over, "Test score" logs


@pytest.mark.parametrize("log", REAL + sorted(HANDMADE.glob("*.log")), ids=lambda p: p.name)
def test_native_scanner_reads_every_fixture_like_the_reference(log):
    curves = native_engine(log, year=2025)
    assert _same_curves(curves, lines_engine(log, year=2025))
    assert curves.engine == ("lines" if log.name in DECLINED else "native")  # it takes every regular log


def test_native_scanner_reads_a_big_resumed_two_net_log_like_the_reference(tmp_path):
    """The real two-test-net log repeated (as bench/parse does), a second run appended that goes back in
    iterations, and a cut last line: rows, Segment column, Seconds, lr and truncated tail all as per line."""
    parts = [_repeated_real_log(60)]
    parts.append((LOGS / "resumed.log").read_text())  # glog year prefix, its own Solving line
    parts.append("I20261123 18:47:01.000001 10132 solver.cpp:231] Iteration 9, loss = 0.5")
    log = tmp_path / "big.log"
    log.write_text("".join(parts))
    curves, slow = native_engine(log), lines_engine(log)
    assert curves.engine == "native" and _same_curves(curves, slow)
    assert curves.segments == slow.segments >= 2 and curves.train.columns[-1] == "Segment"
    assert curves.truncated_tail == "Iteration 9, loss = 0.5"


def test_auto_engine_reads_big_files_natively_and_small_ones_with_the_reference(tmp_path):
    from caffegen.logs import NATIVE_MIN_BYTES

    _native_lib()
    small, big = LOGS / "two_test_nets.log", tmp_path / "big.log"
    big.write_text(_repeated_real_log(250))
    assert small.stat().st_size < NATIVE_MIN_BYTES <= big.stat().st_size
    assert parse_log(small).engine == "lines" and parse_log(big).engine == "native"
    assert parse_log(small.read_text().splitlines()).engine == "lines"  # lines in memory: the reference


def test_an_unknown_engine_is_one_input_error():
    from caffegen.errors import InputError

    with pytest.raises(InputError, match="unknown log engine 'fast'"):
        parse_log(LOGS / "two_test_nets.log", engine="fast")


ODD_EDITS = [
    lambda t: t.replace("loss = 1.72949", "loss = 1.7_2949"),  # Python reads 1_7: the scanner does not guess
    lambda t: t.replace("Iteration 3, loss", "Iteration +3, loss"),
    lambda t: t.replace("I20261123 18:46:12.209020", "I20261123 18:46:12.2090x0"),
    lambda t: t.replace("accuracy_at_5 = 1\n", "accuracy_at_5 = 1\tx\n", 1),
    lambda t: t.replace("Iteration 7, lr = 0.01", "Iteration 7, lr = 0.01, m = 0.9"),
    lambda t: t.replace("Iteration 5, loss = 2.13985", "Iteration 5, loss = -nan"),
    lambda t: t.replace("Iteration 12, lr", "Iteration 12 Iteration 3, lr"),
    lambda t: t + "F20261123 18:46:13.000000 10132 solver.cpp:1] Check failed: x\n",
    lambda t: t.replace("Testing net (#1)", "Testing net (#x)"),
    lambda t: t.replace("\n", "\r\n"),
    lambda t: t.replace("Iteration 10, Testing net (#1)\n",
                        "Iteration 10, Testing net (#1)\nI20261123 18:46:12.2 1 solver.cpp:282] Solving again\n"),
    lambda t: re.sub(r"\n[^\n]*Train net output[^\n]*\n", "\n", t),  # loss lines only: the old layout
]
# more odd text, for the native scanner's own rules (the columnar one is run on them too)
ODD_EDITS_MORE = [
    lambda t: t.replace("loss = 1.72949", "loss = 1.72949e-3"),  # an exponent: exact reading, JSON-safe text
    lambda t: t.replace("loss = 1.75752", "loss = .5"),  # not a JSON number: written from the double
    lambda t: t.replace("accuracy_at_5 = 1\n", "accuracy_at_5 = 00001234567890123456789.5e-2\n", 1),
    lambda t: t.replace("loss = 2.13985 (", "loss = inf (").replace("loss = 1.67398", "loss = -inf"),
    lambda t: t.replace("Iteration 20, Testing net (#0)", "Iteration 20, Testing net (#01)"),
    lambda t: t.replace("accuracy_at_1 = ", "accuracy_at_1@net1 = ", 1),  # a name that another net's column has
    lambda t: t.replace("I20261123 18:46:12.209020", "I20261123 18:46:99.209020"),  # seconds as the clock reads them
    lambda t: t.replace("I20261123 18:46:12.209020", "I20261131 18:46:12.209020"),  # no such day: no Seconds
    lambda t: t.replace("Iteration 12, lr = 0.01", "Iteration 12, lr = 0.02"),
    lambda t: t.replace("Iteration 3, loss", "Iteration 3 (default), loss"),
    lambda t: t.replace("Iteration 3, loss = 1.67398", "Iteration 3"),  # digits only: read without the last one
    lambda t: t.replace("Solving tiny", "Solving tiny\u00e9"),
    lambda t: t.replace("] Iteration 5, loss", "] Train net output #0: loss = 3\n] Iteration 5, loss"),
    lambda t: t.replace("Test net output #1: accuracy_at_5", "Train net output #1: accuracy_at_5", 1),
    lambda t: t + "I20261123 18:46:13.000000 10132 solver.cpp:1] Iteration 99, lr = 0.5",  # cut last line
    lambda t: t.replace("\n", "\n\n"),
    lambda t: t.replace("Iteration 5, loss = 2.13985", "Iteration 5, loss = "),  # no value: no loss
    # a cut last line with two heads: the per-line path reads the first one
    lambda t: t + "I20261123 18:46:13.000000 10132 solver.cpp:231] Iteration 50, loss = 1 Iteration 51, lr",
]




@pytest.mark.parametrize("edit", ODD_EDITS + ODD_EDITS_MORE, ids=range(len(ODD_EDITS) + len(ODD_EDITS_MORE)))
def test_native_scanner_declines_or_agrees_on_odd_text(edit, tmp_path):
    log = tmp_path / "odd.log"
    log.write_text(edit((LOGS / "two_test_nets.log").read_text()))
    curves = native_engine(log, year=2025)
    assert _same_curves(curves, lines_engine(log, year=2025))
    assert curves.summary().keys() == lines_engine(log, year=2025).summary().keys()


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINES), st.integers(0, 200), st.text(max_size=8)), min_size=1,
                max_size=60))
def test_native_scanner_agrees_on_mutated_real_lines(edits):
    import tempfile

    lines = [line[:pos] + junk + line[pos + len(junk):] for line, pos, junk in edits]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "m.log"
        log.write_text("\n".join(lines) + "\n", errors="surrogatepass")
        assert _same_curves(native_engine(log, year=2025), lines_engine(log, year=2025))


def _native_number(lib, text: str):
    import ctypes

    out = ctypes.c_double()
    raw = text.encode()
    return out.value if lib.ls_parse_num(raw, len(raw), ctypes.byref(out)) else None


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.eE+-_naifNIty ", max_size=14),
                 st.floats().map(repr), st.floats().map(lambda v: f"{v:.6g}"), st.floats().map(lambda v: f"{v:.17e}"),
                 st.integers(-10 ** 30, 10 ** 30).map(str),
                 st.tuples(st.integers(0, 10 ** 19), st.integers(0, 25), st.integers(-330, 330))
                 .map(lambda t: f"{str(t[0])[:t[1]]}.{str(t[0])[t[1]:]}e{t[2]}")))
def test_native_reads_a_number_as_python_does_or_not_at_all(text):
    """The native scanner's premise: where it reads a number, Python's float() reads the same one (bit for bit,
    -0.0 included; nan as nan)."""
    got = _native_number(_native_lib(), text)
    if got is not None:
        want = float(text)
        assert same(got, want) and math.copysign(1, got) == math.copysign(1, want) or math.isnan(want), text


def test_native_number_reader_edges():
    lib = _native_lib()
    for text in ("0", "-0", "1e-05", "2.5e+06", "9007199254740993", "0.1", "1e22", "1e23", "4.9e-324", "1e-400",
                 "1e400", "-1e400", "123456789012345678901234567890", ".5", "5.", "+3", "nan", "-nan", "inf", "-inf",
                 "1.7976931348623157e308", "2.2250738585072011e-308", "0.30000000000000004"):
        got = _native_number(lib, text)
        assert got is not None and same(got, float(text)), text
        assert math.copysign(1, got) == math.copysign(1, float(text)) or math.isnan(got), text
    for text in ("", "1_0", "0x10", "NaN", "Infinity", "+nan", "1e", "e5", ".", "-", "1.5.", " 1", "1 ", "1,5"):
        assert _native_number(lib, text) is None, text


def test_native_table_keeps_the_table_api_and_is_read_only(tmp_path):
    log = LOGS / "two_test_nets.log"
    curves, rows_curves = native_engine(log), lines_engine(log)
    assert curves.engine == "native"
    assert len(curves.test) == len(rows_curves.test) == 4
    assert curves.test.column("loss@net1") == rows_curves.test.column("loss@net1")
    assert curves.test.series("accuracy_at_1") == rows_curves.test.series("accuracy_at_1")
    assert curves.test.metrics() == rows_curves.test.metrics() and curves.summary() == rows_curves.summary()
    assert curves.train.to_json() == rows_curves.train.to_json()
    assert curves.train.rows == rows_curves.train.rows and curves.train.rows is curves.train.rows  # built once
    a, b = tmp_path / "a", tmp_path / "b"
    write_outputs(curves, log, a)
    write_outputs(rows_curves, log, b)
    for suffix in ("train", "test", "json"):  # the same files from C memory as from rows
        assert (a / f"two_test_nets.log.{suffix}").read_text() == (b / f"two_test_nets.log.{suffix}").read_text()
    with pytest.raises(AttributeError):
        curves.train.columns.append("extra")  # read-only: copy() gives a table to edit
    edited = curves.train.copy()
    edited.rows[0]["loss"] = 99.0
    assert edited.column("loss")[0] == 99.0 and curves.train.column("loss")[0] != 99.0


def _read_back(out: Path, name: str) -> tuple[list[list], dict]:
    """The written CSVs as numbers (None for an empty cell) and the JSON document."""
    import json

    tables = []
    for suffix in ("train", "test"):
        with open(out / f"{name}.{suffix}", newline="") as fh:
            rows = list(csv.reader(fh))
        tables.append([rows[0]] + [[None if v == "" else float(v) for v in row] for row in rows[1:]])
    return tables, json.loads((out / f"{name}.json").read_text())


def _same_cells(a: list, b: list) -> bool:
    """Same header, then the same numbers row by row."""
    return a[0] == b[0] and len(a) == len(b) and all(
        len(x) == len(y) and all(same(u, v) for u, v in zip(x, y)) for x, y in zip(a[1:], b[1:]))


@pytest.mark.parametrize("edit", [lambda t: t] + ODD_EDITS_MORE[:5] + [ODD_EDITS[5], ODD_EDITS_MORE[6]], ids=range(8))
def test_native_outputs_read_back_as_the_reference_outputs(edit, tmp_path):
    """What the C writer writes (the log's own number text, Seconds from whole microseconds) reads back to the
    same numbers as what the reference writes: CSV cell by cell, and the same JSON document."""
    log = tmp_path / "x.log"
    text = edit((LOGS / "two_test_nets.log").read_text())
    log.write_text("".join(re.sub(r"Iteration (\d+)", lambda m: f"Iteration {int(m.group(1)) + 31 * k}", text)
                           for k in range(3)))  # resumed twice over: Segment columns too
    curves = native_engine(log, year=2025)
    assert curves.engine == "native" and curves.segments == 3
    write_outputs(curves, log, tmp_path / "a")
    write_outputs(lines_engine(log, year=2025), log, tmp_path / "b")
    (ours, ours_js), (theirs, theirs_js) = _read_back(tmp_path / "a", "x.log"), _read_back(tmp_path / "b", "x.log")
    assert all(_same_cells(x, y) for x, y in zip(ours, theirs))
    assert ours_js == theirs_js and ours_js == json.loads(json.dumps(curves.to_json()))


def _big_two_net_log(tmp_path: Path, repeats: int, extra: str = "") -> Path:
    """The real two-test-net log's training part repeated ``repeats`` times (as bench/parse does), ``extra`` in the
    middle."""
    lines = (LOGS / "two_test_nets.log").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "Solving " in line) + 1
    body = "".join(line for line in lines[start:] if "Optimization Done" not in line)
    parts = ["".join(lines[:start])]
    for k in range(repeats):
        parts.append(re.sub(r"Iteration (\d+)", lambda m: f"Iteration {int(m.group(1)) + 31 * k}", body))
        if k == repeats // 2:
            parts.append(extra)
    log = tmp_path / "big.log"
    log.write_text("".join(parts))
    return log


@pytest.mark.parametrize("simd", [0, 1], ids=["16-byte", "32-byte"])
def test_native_block_scans_read_alike(simd, tmp_path):
    """Both block scans (SSE2 16 bytes, AVX2 32 bytes where the CPU has it) on every fixture, the odd text, a log
    with a line longer than the read block (it grows) and lines across block edges, and a line as long as the
    reference's read chunk (declined): as the reference reads them."""
    lib = _native_lib()
    before = lib.ls_simd(-1)
    try:
        if lib.ls_simd(simd) != simd:
            pytest.skip("this CPU has no AVX2")
        for log in REAL + sorted(HANDMADE.glob("*.log")):
            curves = native_engine(log, year=2025)
            assert _same_curves(curves, lines_engine(log, year=2025)), log.name
            assert curves.engine == ("lines" if log.name in DECLINED else "native")
        for k, edit in enumerate(ODD_EDITS + ODD_EDITS_MORE):
            log = tmp_path / f"odd{k}.log"
            log.write_text(edit((LOGS / "two_test_nets.log").read_text()))
            assert _same_curves(native_engine(log, year=2025), lines_engine(log, year=2025))
        for width, taken in ((60_000, True), (180_000, False)):  # 360 KB: read; 1.08 MB >= a 1 MB chunk: declined
            long_line = "I1123 18:46:12.000000 1 x.cpp:1] " + "x = 1 " * width + "\n"
            log = _big_two_net_log(tmp_path, 40, long_line)
            curves = native_engine(log)
            assert (curves.engine == "native") == taken and _same_curves(curves, lines_engine(log))
    finally:
        lib.ls_simd(before)


ASCII_JUNK = st.lists(st.sampled_from(["Iteration ", " net output #", "loss = ", "lr = ", ", ", " = ", "Testing net (#",
                                       ")", "Train", "Test", "Solving ", "#", ":", " ", "0", "7", "12", ".", "e-", "nan",
                                       "-inf", "x", "\t", "F", "fault", "I1123 ", "12:59", "\n"]), max_size=4).map("".join)


LOG_LINES = [log.read_text().splitlines() for log in REAL + sorted(HANDMADE.glob("*.log"))]
_EDIT = st.tuples(st.integers(0, 10 ** 6), st.integers(0, 120), ASCII_JUNK)
# real lines in any order, or a stretch of a real log as it was written; then a few ASCII edits
_REAL_TEXT = st.one_of(
    st.lists(st.sampled_from(LINES), min_size=1, max_size=80),
    st.tuples(st.sampled_from(LOG_LINES), st.integers(0, 10 ** 6), st.integers(1, 400))
    .map(lambda t: t[0][t[1] % len(t[0]):][:t[2]]))


@settings(max_examples=500, deadline=None)
@given(_REAL_TEXT, st.lists(_EDIT, max_size=3), st.booleans(), st.booleans())
def test_native_scanner_agrees_on_real_lines_in_any_order_with_ascii_edits(lines, edits, yearless, cut):
    """Real lines in any order (iterations going back, outputs before heads, Solving anywhere, timestamps
    jumping) or stretches of real logs, with ASCII edits made of the very tokens the scanner looks for, the
    last line cut or not: it declines or agrees."""
    import tempfile

    from hypothesis import event

    lines = list(lines)
    for at, pos, junk in edits:
        line = lines[at % len(lines)]
        lines[at % len(lines)] = line[:pos] + junk + line[pos + len(junk):]
    text = "\n".join(lines) + ("" if cut else "\n")
    if yearless:
        text = re.sub(r"^([IWEF])\d{4}(\d{4} )", r"\1\2", text, flags=re.M)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "m.log"
        log.write_text(text)
        curves = native_engine(log, year=2025)
        event(f"read by: {curves.engine}")
        assert _same_curves(curves, lines_engine(log, year=2025))


@pytest.mark.parametrize("log", REAL, ids=lambda p: p.name)
def test_native_scanner_reads_year_less_logs_and_declines_a_year_roll_over(log, tmp_path):
    yearless = strip_year(log, tmp_path / log.name)
    curves = native_engine(yearless, year=2025)
    assert _same_curves(curves, lines_engine(yearless, year=2025))
    assert curves.engine == ("lines" if log.name == "fatal.log" else "native")
    text = yearless.read_text()
    first = re.search(r"^I(\d{4}) ", text, flags=re.M).group(1)
    for new_date, kind in (("1231", "same year"), ("0131", "month 1 then 11: a roll-over")):
        cut = len(text) // 2  # the second half a month later, or in December: a year roll-over
        edited = text[:cut] + re.sub(rf"^I{first} ", f"I{new_date} ", text[cut:], flags=re.M)
        if kind == "same year":
            edited = re.sub(rf"^I{first} ", "I1130 ", text[:cut], flags=re.M) + edited[cut:]
        odd = tmp_path / f"odd_{new_date}.log"
        odd.write_text(edited)
        curves = native_engine(odd, year=2025)
        assert _same_curves(curves, lines_engine(odd, year=2025)), kind
        if kind != "same year" and log.name != "fatal.log":
            assert curves.engine == "lines"  # Nov -> Jan: the reference rolls the year over; the scanner leaves it


def test_native_tables_copy_and_pickle_as_rows():
    import copy
    import pickle

    curves = native_engine(LOGS / "two_test_nets.log")
    assert curves.engine == "native"
    want = lines_engine(LOGS / "two_test_nets.log")
    for other in (copy.deepcopy(curves), pickle.loads(pickle.dumps(curves))):
        assert other.train.rows == want.train.rows and other.test.rows == want.test.rows
        assert _same_pairs(other.loss_log, want.loss_log)
    assert curves.train.rows == want.train.rows  # the original reads on as before


def test_native_build_is_cached_and_reused(tmp_path, monkeypatch):
    from caffegen.logs import native

    _native_lib()
    monkeypatch.setenv("CAFFEGEN_CACHE", str(tmp_path))
    path = native.build()
    assert path.parent == tmp_path / "native" and path.name.startswith("logscan-") and path.suffix == ".so"
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    assert native.build() == path and (path.stat().st_mtime_ns, path.stat().st_ino) == stamp  # reused, not rebuilt
    assert native.load() is not None and native.load() is native.load()
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind
    monkeypatch.setenv("CC", "cc -DCAFFEGEN_OTHER_FLAGS")  # another compiler command: another library
    assert native.library_path() != path


def test_native_scanner_is_skipped_cleanly_without_a_compiler(tmp_path, monkeypatch):
    from caffegen.logs import native

    monkeypatch.setenv("CAFFEGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert native.load() is None and "unavailable" in native.last_error
    assert not (tmp_path / "native").exists() or not list((tmp_path / "native").iterdir())
    log = LOGS / "two_test_nets.log"
    curves = parse_log(log, year=2025, engine="native")  # the reference reads it, without an error
    assert curves.engine == "lines" and _same_curves(curves, lines_engine(log, year=2025))


def test_written_json_is_to_json_and_csv_keeps_nan_and_empty_cells(tmp_path):
    import json

    curves = parse_log(LOGS / "diverged.log")
    _train, test_csv, js = write_outputs(curves, LOGS / "diverged.log", tmp_path)
    assert json.loads(js.read_text()) == curves.to_json()
    curves.test.rows[0]["extra"] = 1.0
    curves.test.columns.append("extra")
    curves.test.to_csv(test_csv)
    with open(test_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["extra"] == "1.0" and rows[1]["extra"] == ""
