"""End-to-end speed of caffegen's log parser vs Caffe's own tools/extra/parse_log.py, same log, one run.

    .venv/bin/python bench/parse/run.py [--lines 1000000]

The log is a real recorded one (tests/fixtures/logs/two_test_nets.log: display 1, two test nets),
its year-less glog form (parse_log.py cannot read glog 0.6's year prefix), its training part repeated
with increasing iteration numbers until it has --lines lines; it is written to a temp dir, not kept.
parse_log.py comes from the Caffe source the build uses; its one Python-2 print statement is rewritten
in a temp copy so it runs under Python 3.

What is timed is what each tool does for a user who runs it on the log: caffegen = ``parse_log(path)`` +
``write_outputs`` (LOG.train, LOG.test, LOG.json), as ``caffegen parse`` does; Caffe = ``parse_log.parse_log(path)``
+ ``save_csv_files(...)`` (LOG.train, LOG.test), as parse_log.py's ``main`` does. Both in this process (best of
--repeat; imports done before timing), wall-clock and CPU (process) time; the 1-minute load average before and
after goes into the results (the machine is shared). The written CSVs are checked to hold the same rows.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build_log(dst: Path, lines: int) -> int:
    text = (ROOT / "tests/fixtures/logs/two_test_nets.log").read_text()
    text = re.sub(r"^([IWEF])\d{4}(\d{4} )", r"\1\2", text, flags=re.M)
    all_lines = text.splitlines(keepends=True)
    start = next(i for i, l in enumerate(all_lines) if "Solving " in l) + 1
    head, body = all_lines[:start], [l for l in all_lines[start:] if "Optimization Done" not in l]
    iters = [int(m) for m in re.findall(r"Iteration (\d+)", "".join(body))]
    step = max(iters) + 1
    n, k = len(head), 0
    with dst.open("w") as fh:
        fh.writelines(head)
        while n < lines:
            off = k * step
            fh.write(re.sub(r"Iteration (\d+)", lambda m: f"Iteration {int(m.group(1)) + off}", "".join(body)))
            n += len(body)
            k += 1
    return n


def load_caffe_parse_log(tmp: Path):
    from caffegen.toolchain.build import caffe_tools_extra

    extra = caffe_tools_extra()
    (tmp / "extract_seconds.py").write_text((extra / "extract_seconds.py").read_text())
    code = (extra / "parse_log.py").read_text().replace("print 'Wrote %s' % output_filename",
                                                         "print('Wrote %s' % output_filename)")
    (tmp / "caffe_parse_log.py").write_text(code)
    sys.path.insert(0, str(tmp))
    spec = importlib.util.spec_from_file_location("caffe_parse_log", tmp / "caffe_parse_log.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, extra / "parse_log.py"


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) time of ``repeat`` runs: on a shared machine the CPU time is
    the steadier figure, the wall time the one a user waits."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, result


def fresh_python(code: str, *args: Path) -> str:
    """What ``code`` prints in a fresh interpreter (this one has imported and allocated too much to measure)."""
    import subprocess

    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          check=True).stdout.strip()


def import_seconds(module: str) -> float:
    """Seconds a fresh interpreter takes to import ``module``: a once-per-process cost the timings above leave
    out (they import before timing), but a user's ``caffegen parse`` run pays it."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return round(float(fresh_python(code)), 3)


PATHS = {  # which of parse_log's paths a run may take: the others are switched off
    "native": "",
    "columnar": "p.NATIVE_MIN = 1 << 62\n",
    "streaming": "p.NATIVE_MIN = 1 << 62; p.COLUMNAR_MAX = -1\n",
}


def peak_rss_mb(log: Path, out: Path, path: str) -> float:
    """Peak resident memory (MB) of a fresh interpreter doing what ``caffegen parse LOG`` does, by one path: the
    native scanner (it streams the file), the columnar one (reads it whole), the streaming per-line parser."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report this big parent's
    code = ("import sys; import caffegen.parse as p\n" + PATHS[path] +
            "p.write_outputs(p.parse_log(sys.argv[1]), sys.argv[1], sys.argv[2])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print(int(hwm.split()[1]) / 1024)")
    return round(float(fresh_python(code, log, out)), 1)


def path_taken(curves) -> str:
    if curves.train._native is not None:
        return "native (caffegen/native/logscan.c)"
    if curves.train._frame is not None:
        return "columnar (polars)"
    return "per-line"


def cli_seconds(cmd: list[str], repeat: int) -> float:
    """Best wall time of a whole command in a fresh process (interpreter start and imports included): what a
    user who types it waits."""
    import subprocess

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return round(best, 3)


def parse_imports_polars(log: Path, out: Path) -> bool:
    """Whether ``caffegen parse`` imported polars on this log (the native path does not need it)."""
    code = ("import sys; import caffegen.parse as p\n"
            "p.write_outputs(p.parse_log(sys.argv[1]), sys.argv[1], sys.argv[2])\n"
            "print('polars' in sys.modules)")
    return fresh_python(code, log, out) == "True"


def same_csv(a: Path, b: Path) -> int:
    """Rows of two CSV files hold the same numbers (parse_log.py writes NumIters as 0.0, caffegen as 0)."""
    import csv
    import math

    with a.open() as fa, b.open() as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert len(ra) == len(rb), (a, len(ra), len(rb))
    for x, y in zip(ra, rb):
        for k in y:
            u, v = float(x[k]), float(y[k])
            assert u == v or (math.isnan(u) and math.isnan(v)), (k, x, y)
    return len(ra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import polars  # noqa: F401  (imported before timing, like parse_log.py's own imports)

    from caffegen import native
    from caffegen.parse import parse_log, write_outputs

    lib = native.load()  # built into the cache on first use (make setup builds it): not timed

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "big.log"
        n = build_log(log, args.lines)
        caffe_mod, caffe_src = load_caffe_parse_log(tmp)
        ours_dir, caffe_dir = tmp / "caffegen", tmp / "caffe"
        ours_dir.mkdir()
        caffe_dir.mkdir()

        def ours():
            curves = parse_log(log)
            write_outputs(curves, log, ours_dir)
            return curves

        def caffe():
            train, test = caffe_mod.parse_log(str(log))
            caffe_mod.save_csv_files(str(log), str(caffe_dir), train, test)
            return train, test

        load_before = os.getloadavg()
        t_ours, c_ours, curves = best_of(ours, args.repeat)
        t_caffe, c_caffe, (train, test) = best_of(caffe, args.repeat)
        load_after = os.getloadavg()
        assert len(curves.train) == len(train), (len(curves.train), len(train))
        checked = same_csv(ours_dir / "big.log.train", caffe_dir / "big.log.train")
        cli_ours = cli_seconds([sys.executable, "-m", "caffegen", "parse", str(log), "--out", str(ours_dir)],
                               args.repeat)
        cli_caffe = cli_seconds([sys.executable, str(tmp / "caffe_parse_log.py"), str(log), str(caffe_dir)],
                                args.repeat)
        res = {"lines": n, "bytes": log.stat().st_size, "train_rows": len(train), "test_rows": len(test),
               "train_csv_rows_checked_equal": checked,
               "caffegen_path": path_taken(curves),
               "native_scanner": (f"{lib._name} ({'AVX2' if lib.ls_simd(-1) else 'SSE2'} block scan)" if lib
                                  else native.last_error),
               "timed": {"caffegen": "parse_log(path) + write_outputs (.train, .test, .json)",
                         "parse_log.py": "parse_log(path) + save_csv_files (.train, .test)"},
               "caffegen_s": round(t_ours, 3), "parse_log_py_s": round(t_caffe, 3),
               "caffegen_lines_per_s": round(n / t_ours), "parse_log_py_lines_per_s": round(n / t_caffe),
               "speedup": round(t_caffe / t_ours, 2), "caffegen_cpu_s": round(c_ours, 3),
               "parse_log_py_cpu_s": round(c_caffe, 3), "speedup_cpu": round(c_caffe / c_ours, 2),
               "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
               "cpus": os.cpu_count(),
               "polars_import_s_not_timed_above": import_seconds("polars"),
               "caffegen_parse_imports_polars": parse_imports_polars(log, ours_dir),
               "whole_command_fresh_process_s": {"caffegen parse": cli_ours, "parse_log.py": cli_caffe,
                                                 "speedup": round(cli_caffe / cli_ours, 2)},
               "caffegen_peak_rss_mb": {path: peak_rss_mb(log, ours_dir, path) for path in PATHS},
               "parse_log_py": str(caffe_src),
               "python": sys.version.split()[0]}
    print(json.dumps(res, indent=1))
    (Path(__file__).parent / "results.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
