"""End-to-end speed of caffegen's log parser vs Caffe's own tools/extra/parse_log.py, same log, one run.

    .venv/bin/python bench/parse/run.py [--lines 1000000]

The log is a real recorded one (tests/fixtures/logs/two_test_nets.log: display 1, two test nets),
its year-less glog form (parse_log.py cannot read glog 0.6's year prefix), its training part repeated
with increasing iteration numbers until it has --lines lines; it is written to a temp dir, not kept.
parse_log.py comes from the Caffe source the build uses; its one Python-2 print statement is rewritten
in a temp copy so it runs under Python 3.

What is timed is what each tool does for a user who runs it on the log: caffegen = ``parse_log(path, engine=E)``
+ ``write_outputs`` (LOG.train, LOG.test, LOG.json), as ``caffegen parse --engine E`` does, for both engines (the
native scanner, and the reference parser alone: what a machine without a C compiler gets); Caffe = ``parse_log.parse_log(path)``
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
    from caffegen.toolchain.upstream import caffe_tools_extra

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


ENGINES = ("native", "lines")  # caffegen's two engines: the C scanner, and the reference a machine without cc gets


def peak_rss_mb(log: Path, out: Path, engine: str) -> float:
    """Peak resident memory (MB) of a fresh interpreter doing what ``caffegen parse LOG --engine E`` does."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report this big parent's
    code = ("import sys; from caffegen.logs import parse_log, write_outputs\n"
            f"write_outputs(parse_log(sys.argv[1], engine={engine!r}), sys.argv[1], sys.argv[2])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print(int(hwm.split()[1]) / 1024)")
    return round(float(fresh_python(code, log, out)), 1)


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
    from caffegen.logs import native, parse_log, write_outputs

    lib = native.load()  # built into the cache on first use (make setup builds it): not timed

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "big.log"
        n = build_log(log, args.lines)
        caffe_mod, caffe_src = load_caffe_parse_log(tmp)
        caffe_dir = tmp / "caffe"
        caffe_dir.mkdir()

        def ours(engine: str, out: Path):
            curves = parse_log(log, engine=engine)
            write_outputs(curves, log, out)
            return curves

        def caffe():
            train, test = caffe_mod.parse_log(str(log))
            caffe_mod.save_csv_files(str(log), str(caffe_dir), train, test)
            return train, test

        load_before = os.getloadavg()
        timed = {}
        for engine in ENGINES:
            out = tmp / engine
            out.mkdir()
            wall, cpu, curves = best_of(lambda: ours(engine, out), args.repeat)
            timed[engine] = {"engine_taken": curves.engine, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                             "train_rows": len(curves.train)}
        t_caffe, c_caffe, (train, test) = best_of(caffe, args.repeat)
        load_after = os.getloadavg()
        for engine in ENGINES:
            assert timed[engine]["train_rows"] == len(train), (engine, timed[engine], len(train))
            timed[engine]["train_csv_rows_checked_equal"] = same_csv(tmp / engine / "big.log.train",
                                                                     caffe_dir / "big.log.train")
            timed[engine]["speedup_wall"] = round(t_caffe / timed[engine]["wall_s"], 2)
            timed[engine]["speedup_cpu"] = round(c_caffe / timed[engine]["cpu_s"], 2)
        cli_caffe = cli_seconds([sys.executable, str(tmp / "caffe_parse_log.py"), str(log), str(caffe_dir)],
                                args.repeat)
        cli = {"parse_log.py": cli_caffe}
        for engine in ENGINES:
            cli[f"caffegen parse --engine {engine}"] = secs = cli_seconds(
                [sys.executable, "-m", "caffegen", "parse", str(log), "--engine", engine, "--out", str(tmp / engine)],
                args.repeat)
            cli[f"speedup {engine}"] = round(cli_caffe / secs, 2)
        load_end = os.getloadavg()
        res = {"lines": n, "bytes": log.stat().st_size, "train_rows": len(train), "test_rows": len(test),
               "native_scanner": (f"{lib._name} ({'AVX2' if lib.ls_simd(-1) else 'SSE2'} block scan)" if lib
                                  else native.last_error),
               "timed": {"caffegen": "parse_log(path, engine=E) + write_outputs (.train, .test, .json)",
                         "parse_log.py": "parse_log(path) + save_csv_files (.train, .test)"},
               "in_process": {**timed, "parse_log.py": {"wall_s": round(t_caffe, 3), "cpu_s": round(c_caffe, 3)}},
               "whole_command_fresh_process_s": cli,
               "loadavg_1min_before_after_end": [round(load_before[0], 2), round(load_after[0], 2),
                                                 round(load_end[0], 2)],
               "cpus": os.cpu_count(),
               "caffegen_peak_rss_mb": {engine: peak_rss_mb(log, tmp / engine, engine) for engine in ENGINES},
               "parse_log_py": str(caffe_src),
               "python": sys.version.split()[0]}
    print(json.dumps(res, indent=1))
    (Path(__file__).parent / "results.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
