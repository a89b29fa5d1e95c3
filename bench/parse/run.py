"""Throughput of caffegen's log parser vs Caffe's own tools/extra/parse_log.py, same log, one run.

    .venv/bin/python bench/parse/run.py [--lines 1000000]

The log is a real recorded one (tests/fixtures/logs/two_test_nets.log: display 1, two test nets),
its year-less glog form (parse_log.py cannot read glog 0.6's year prefix), its training part repeated
with increasing iteration numbers until it has --lines lines; it is written to a temp dir, not kept.
parse_log.py comes from the Caffe source the build uses; its one Python-2 print statement is rewritten
in a temp copy so it runs under Python 3. Both are timed in this process (best of --repeat), wall-clock
and CPU time; the 1-minute load average before and after goes into the results (the machine is shared).
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
    from caffegen.toolchain.build import BuildFlags, entry_for

    extra = entry_for(BuildFlags()).source / "tools" / "extra"
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from caffegen.parse import parse_log

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "big.log"
        n = build_log(log, args.lines)
        caffe_mod, caffe_src = load_caffe_parse_log(tmp)
        load_before = os.getloadavg()
        t_ours, c_ours, curves = best_of(lambda: parse_log(log), args.repeat)
        t_caffe, c_caffe, (train, test) = best_of(lambda: caffe_mod.parse_log(str(log)), args.repeat)
        assert len(curves.train) == len(train), (len(curves.train), len(train))
        res = {"lines": n, "bytes": log.stat().st_size, "train_rows": len(train), "test_rows": len(test),
               "caffegen_s": round(t_ours, 3), "parse_log_py_s": round(t_caffe, 3),
               "caffegen_lines_per_s": round(n / t_ours), "parse_log_py_lines_per_s": round(n / t_caffe),
               "speedup": round(t_caffe / t_ours, 2), "caffegen_cpu_s": round(c_ours, 3),
               "parse_log_py_cpu_s": round(c_caffe, 3), "speedup_cpu": round(c_caffe / c_ours, 2),
               "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
               "parse_log_py": str(caffe_src),
               "python": sys.version.split()[0]}
    print(json.dumps(res, indent=1))
    (Path(__file__).parent / "results.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
