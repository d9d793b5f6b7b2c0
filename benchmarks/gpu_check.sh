#!/usr/bin/env bash
# GPU checks in one call of at most 8 minutes (docs/performance.md#gpu-check). Prints one JSON
# object per line; a failed part prints {"part": ..., "rc": N} and the rest still runs.
#   bash benchmarks/gpu_check.sh [PYTHON]
# 1. the CUDA tests (pytest -m gpu); 2. train-cam ResNet-50 512 batch 16, make-cam at VOC size,
# train-irn, DeepLab train step 321 batch 10 and inference, fp32 vs bf16 (s and peak MB);
# 3. make-cam images/s at VOC size with cam.batch_images 1, 4, 8; 4. the random walk on the GPU
# vs the CPU; 5. a one-process NCCL DDP train-cam step.
set -u
PY=${1:-${PYTHON:-python}}
DEV=${GPU_CHECK_DEVICE:-cuda}  # cpu: a dry run of the script's plumbing on a machine without CUDA
PARTS=${GPU_CHECK_PARTS:-gpu_tests precision make_cam_batch random_walk ddp_nccl}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

part() {  # part NAME SECONDS CMD...: run with a time limit, print its JSON or its exit code
  local name=$1 limit=$2
  shift 2
  case " $PARTS " in *" $name "*) ;; *) return 0 ;; esac
  local start=$SECONDS
  timeout "$limit" bash -c '"$@"' _ "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  local rc=$?
  if [ $rc -eq 0 ] && "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$TMP/$name.out" 2>/dev/null; then
    "$PY" -c 'import json,sys; print(json.dumps({"part": sys.argv[2], "wall_s": int(sys.argv[3]), "result": json.load(open(sys.argv[1]))}))' \
      "$TMP/$name.out" "$name" "$((SECONDS - start))"
  else
    "$PY" -c 'import json,sys; print(json.dumps({"part": sys.argv[1], "rc": int(sys.argv[2]), "wall_s": int(sys.argv[3]), "tail": open(sys.argv[4]).read()[-800:] + open(sys.argv[5]).read()[-800:]}))' \
      "$name" "$rc" "$((SECONDS - start))" "$TMP/$name.out" "$TMP/$name.err"
  fi
}

pytest_json() {  # the gpu-marked tests, summarised as JSON
  "$PY" -m pytest -q -m gpu tests -p no:cacheprovider >"$TMP/pytest.log" 2>&1
  local rc=$?
  "$PY" -c 'import json,sys; print(json.dumps({"rc": int(sys.argv[1]), "summary": open(sys.argv[2]).read().strip().splitlines()[-1]}))' "$rc" "$TMP/pytest.log"
  return $rc
}

walk_json() {  # the sparse walk on a VOC-sized grid: CUDA and CPU
  "$PY" benchmarks/random_walk.py --device "$DEV" | head -1 >"$TMP/walk_gpu" &&
  "$PY" benchmarks/random_walk.py | head -1 >"$TMP/walk_cpu" &&
  "$PY" -c 'import json,sys; g, c = (json.load(open(p)) for p in sys.argv[1:3]); print(json.dumps({"gpu": g, "cpu": c, "speedup": round(c["seconds"] / g["seconds"], 2)}))' "$TMP/walk_gpu" "$TMP/walk_cpu"
}

ddp_json() {  # one process group (NCCL on CUDA) of one rank: two train-cam steps on the tiny data
  local log="$TMP/ddp.log"
  { "$PY" -m vwe.cli make-dataset synthetic.size=tiny "data.root=$TMP/data" &&
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m vwe.cli train-cam \
      "device=$DEV" "data.root=$TMP/data" "run_dir=$TMP/run" data.num_workers=2 \
      model.backbone=resnet_tiny model.pretrained=none model.num_words=8 \
      train_cam.batch_size=4 train_cam.max_steps=2 train_cam.crop_size=64
  } >"$log" 2>&1 || { tail -c 800 "$log" >&2; return 1; }
  "$PY" -c 'import json,sys,torch; s = torch.load(sys.argv[1], weights_only=True); print(json.dumps({"device": sys.argv[2], "backend": "nccl" if sys.argv[2] == "cuda" else "gloo", "world_size": 1, "steps": int(s["step"])}))' "$TMP/run/train_cam/final.pt" "$DEV"
}

export PY TMP DEV
export -f pytest_json walk_json ddp_json
"$PY" -c 'import json,torch; print(json.dumps({"part": "device", "cuda": torch.cuda.is_available(), "name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__}))'
part gpu_tests 90 pytest_json
part precision 210 "$PY" benchmarks/precision.py --device "$DEV" --sizes gpu --repeats 3
part make_cam_batch 50 "$PY" benchmarks/cam_stage.py --device "$DEV" --batch-images 1,4,8 --images "${GPU_CHECK_IMAGES:-16}"
part random_walk 60 walk_json
part ddp_nccl 60 ddp_json
