#!/usr/bin/env bash
# The GPU device check (docs/gpu.md), in one go on a fresh GPU host, with the lean bundle of `make gpu-bundle`:
#
#   1. caffe device_query -gpu 0
#   2. a training run of the seed net at crop 224 on generated images (DummyData: the bundle has no OpenCV, so no
#      ImageData; gaussian pixels and uniform labels, made on the GPU, so the input pipeline costs nothing)
#   3. caffe time -gpu 0 of the seed net at batch 16, 64 and 256: img/s, and the share of the fp32 FLOP limit
#   4. packing: 1, 2, 4 and 8 concurrent training runs on GPU 0: total img/s
#
# and writes everything under $OUT: results.json (with what the host gives: glibc, GPUs, CUDA library folders, any
# library still missing), each step's log, the nets. Each step runs whatever the others did,
# with a time limit; one that fails is recorded as failed with its last lines. Within a few minutes on an H200.
#
#   OUT=/tmp/out bench/gpu/run.sh [BUNDLE]          # BUNDLE: the bundle folder [default: .gpu-bundle]
#   SMOKE=1 bench/gpu/run.sh BUNDLE                 # tiny sizes, on the CPU when there is no GPU (the test runs this)
#
# The CUDA libraries (cudart, cuBLAS, cuRAND) come from the host: the nvidia-* Python packages' lib folders, found
# with python3, go on LD_LIBRARY_PATH. The seed net costs ~0.48 GFLOP forward per 224x224 image and ~1.4 GFLOP
# forward + backward; an H200's fp32 peak is ~67 TFLOP/s, so ~48k img/s is the ceiling.
set -u
BUNDLE=$(cd "${1:-.gpu-bundle}" && pwd)
OUT=${OUT:-$PWD/gpu-results}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT/nets" "$OUT/logs"
CAFFE="$BUNDLE/bin/caffe"

NVLIBS=$(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
seen = []
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "cu*", "lib")):
        if d not in seen:
            seen.append(d)
print(":".join(seen))
PY
)
export LD_LIBRARY_PATH="${NVLIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GLOG_logtostderr=1

if [ "$SMOKE" = 1 ]; then
  CROP=32; BATCHES="2 4"; TIME_ITERS=2; TRAIN_ITERS=4; PACK="1 2"; PACK_BATCH=2; PACK_ITERS=4; LIMIT=120
else
  CROP=224; BATCHES="16 64 256"; TIME_ITERS=20; TRAIN_ITERS=200; PACK="1 2 4 8"; PACK_BATCH=64; PACK_ITERS=100
  LIMIT=240
fi
GPU_ARGS=(-gpu 0)
MODE=GPU
if [ "$SMOKE" = 1 ] && ! command -v nvidia-smi >/dev/null 2>&1; then GPU_ARGS=(); MODE=CPU; fi

# The seed net (5 convs 3x3 stride 2: 64 64 128 128 256, ReLU, global average pool, fc 20, softmax loss) fed by
# DummyData of batch $1 at crop $CROP.
net() {
  local b=$1 widths=(64 64 128 128 256) bottom=data i
  cat <<EOF
name: "seed_dummy_b$b"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: $b dim: 3 dim: $CROP dim: $CROP } shape { dim: $b }
    data_filler { type: "gaussian" std: 50 } data_filler { type: "uniform" min: 0 max: 19.99 } } }
EOF
  for i in 1 2 3 4 5; do
    cat <<EOF
layer { name: "conv$i" type: "Convolution" bottom: "$bottom" top: "conv$i"
  convolution_param { num_output: ${widths[$((i-1))]} kernel_size: 3 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" } } }
layer { name: "relu$i" type: "ReLU" bottom: "conv$i" top: "conv$i" }
EOF
    bottom=conv$i
  done
  cat <<EOF
layer { name: "pool" type: "Pooling" bottom: "conv5" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
  inner_product_param { num_output: 20 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
EOF
}

solver() {  # solver for net file $1, $2 iterations
  cat <<EOF
net: "$1"
base_lr: 0.01
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: $2
display: 20
snapshot: 0
snapshot_after_train: false
random_seed: 0
solver_mode: $MODE
EOF
}

now() { date +%s.%N; }
STEPS="$OUT/steps.tsv"
: > "$STEPS"
step() {  # name, then the command: runs it with a limit, logs it, records status and seconds
  local name=$1; shift
  local t0 t1 rc
  t0=$(now)
  timeout "$LIMIT" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  t1=$(now)
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" >> "$STEPS"
  echo "[gpu] $name: exit $rc"
}

# What the host gives (the first thing to read when a step fails): its glibc against the bundle's need, its GPUs,
# the CUDA library folders found, and any library the loader still cannot find for the binary.
{
  echo "glibc	$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
  echo "glibc_needed	$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["from_host"]["glibc"])' \
    "$BUNDLE/bundle.json" 2>/dev/null)"
  echo "gpus	$(nvidia-smi -L 2>/dev/null | tr '\n' ';')"
  echo "cuda_lib_dirs	$NVLIBS"
  echo "missing	$(ldd "$CAFFE" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')"
} > "$OUT/host.tsv"
"$CAFFE" --version > "$OUT/logs/version.log" 2>&1
if [ "$MODE" = GPU ]; then step device_query "$CAFFE" device_query -gpu 0; fi

net "$PACK_BATCH" > "$OUT/nets/train.prototxt"
solver "$OUT/nets/train.prototxt" "$TRAIN_ITERS" > "$OUT/nets/solver.prototxt"
step train "$CAFFE" train -solver "$OUT/nets/solver.prototxt" "${GPU_ARGS[@]}"

for b in $BATCHES; do
  net "$b" > "$OUT/nets/time_b$b.prototxt"
  step "time_b$b" "$CAFFE" time -model "$OUT/nets/time_b$b.prototxt" -iterations "$TIME_ITERS" "${GPU_ARGS[@]}"
done

solver "$OUT/nets/train.prototxt" "$PACK_ITERS" > "$OUT/nets/pack_solver.prototxt"
for k in $PACK; do
  t0=$(now)
  pids=()
  for j in $(seq 1 "$k"); do
    timeout "$LIMIT" "$CAFFE" train -solver "$OUT/nets/pack_solver.prototxt" "${GPU_ARGS[@]}" \
      > "$OUT/logs/pack${k}_$j.log" 2>&1 &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  t1=$(now)
  printf '%s\t%s\t%s\n' "pack$k" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" >> "$STEPS"
  echo "[gpu] pack $k: exit $rc"
done

python3 - "$OUT" "$MODE" "$CROP" "$PACK_BATCH" "$TRAIN_ITERS" "$PACK_ITERS" <<'PY'
import json, re, sys
from pathlib import Path
out, mode, crop, pack_batch, train_iters, pack_iters = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
out = Path(out)
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, secs = line.split("\t")
    steps[name] = {"exit": int(rc), "seconds": round(float(secs), 3)}
def tail(name, n=5):
    p = out / "logs" / f"{name}.log"
    return p.read_text(errors="replace").splitlines()[-n:] if p.exists() else []
GFLOP_FB = 1.4 * (crop / 224) ** 2   # forward + backward per image, scaled by the input area
PEAK = 67e12                          # H200 fp32
host = dict(line.split("\t", 1) for line in (out / "host.tsv").read_text().splitlines() if "\t" in line)
host["missing"] = host.get("missing", "").split()
res = {"mode": mode, "crop": crop, "host": host, "version": tail("version", 1), "steps": steps, "time": {},
       "packing": {}}
if "device_query" in steps:
    res["device_query"] = tail("device_query", 30)
for name, s in steps.items():
    if s["exit"] != 0:
        s["tail"] = tail(name)
    m = re.match(r"time_b(\d+)$", name)
    if m:
        text = (out / "logs" / f"{name}.log").read_text(errors="replace")
        fb = re.search(r"Average Forward-Backward: ([\d.]+) ms", text)
        if fb:
            b, ms = int(m.group(1)), float(fb.group(1))
            ips = b / (ms / 1000)
            res["time"][b] = {"forward_backward_ms": ms, "img_per_s": round(ips, 1),
                              "tflops": round(ips * GFLOP_FB / 1e3, 3), "of_fp32_peak": round(ips * GFLOP_FB * 1e9 / PEAK, 4)}
    m = re.match(r"pack(\d+)$", name)
    if m and s["exit"] == 0:
        k = int(m.group(1))
        ips = k * pack_iters * pack_batch / s["seconds"]
        res["packing"][k] = {"runs": k, "batch": pack_batch, "iterations": pack_iters, "wall_s": s["seconds"],
                             "total_img_per_s": round(ips, 1), "of_fp32_peak": round(ips * GFLOP_FB * 1e9 / PEAK, 4)}
if steps.get("train", {}).get("exit") == 0:
    res["train"] = {"iterations": train_iters, "batch": pack_batch, "wall_s": steps["train"]["seconds"],
                    "img_per_s_incl_start": round(train_iters * pack_batch / steps["train"]["seconds"], 1)}
(out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
print(json.dumps(res, indent=1))
PY
