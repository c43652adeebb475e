#!/usr/bin/env bash
# Issues 14 and 21's GPU measurements on a bare, offline CUDA machine, from the project root, after
# `make gpu-pack` filled .gpu/ here (../shared/gpu/README.md):
#
#   bash .gpu/check.sh                      # every part, in this order:
#   bash .gpu/check.sh check keras          # or some of them (a device command may run 10 minutes at most)
#
#   check        scripts/fast_step_check.py: the CUDA-graph step == the eager loop (augmentation, baseline),
#                its run's self-check staying on; then the capture failing on purpose (raise, disagree):
#                the one fallback line, and the eager result
#   keras        scripts/keras_gpu_check.py: `cnnrepro train --framework keras` on the GPU through Keras 3's
#                torch backend (baseline, 2 epochs), beside the PyTorch run of the same settings
#   pipeline     make bench-gpu: every default training under snakemake, timed, one table (target <= 300 s)
#   reproduction the five Dogs-vs-Cats variants, one seed, full epochs, one after another (target <= 60 s)
#   steps        per-step table, fp32 / tf32 / bf16: eager, graph (fast step) and naive paths, fit() cross-check
#
# The data stages run first when their outputs are missing (PetImages from the carried mirror). MNIST and
# Fashion-MNIST are not carried (64 MiB limit): missing, they are written as SYNTHETIC arrays of the real
# shapes, for timing only. Without the ImageNet VGG16 weights the VGG16 variants use random weights, for
# timing only. Logs: $OUT (or .gpu/out): summary.txt (a line per part), one log per part, pipeline.json.
#
# TINY=1 runs everything with tiny settings on the CPU: a dry run of this script, no figure of it means anything;
# what needs CUDA says "skipped: no CUDA". The last lines are a table: each part's exit and time, and the
# RESULT lines of check and keras.
set -uo pipefail
out=${OUT:-.gpu/out}
mkdir -p "$out"
if [ -z "${NO_DEVICE_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source .gpu/device-env.sh
  export PATH=/tmp/site/bin:$PATH  # snakemake's console script, from the carried wheels
fi
tiny=${TINY:-0}
cores=$(nproc)
parts=${*:-check keras pipeline reproduction steps}
dvc_variants=baseline,augmentation,feature_extraction,feature_extraction_augmented,fine_tuning
summary=$out/summary.txt

part() {  # part NAME LIMIT_S COMMAND...: run under its own timeout, log to $out/NAME.log, one summary line
  local name=$1 limit=$2 started rc
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$out/$name.log"
  started=$(date +%s)
  timeout "$limit" "$@" >>"$out/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc in $(($(date +%s) - started)) s$([ $rc = 124 ] && echo ' (timed out)')" | tee -a "$summary"
  tail -n 30 "$out/$name.log"
  return $rc
}

data() {
  local targets=()
  if [ ! -d data/split/book ] && ! ls "${CNNREPRO_DATA_MIRROR:-.gpu/mirror}"/petimages/*.zip >/dev/null 2>&1; then
    # KERAS=1 make gpu-pack carries Keras instead of the PetImages mirror (64 MiB): the book's split as random
    # JPEGs of its sizes, for the check and keras parts (timing only; the pipeline parts need the mirror).
    python3 - <<'PY'
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
root = Path("data/split/book")
for split, n in (("train", 1000), ("validation", 500), ("test", 500)):
    for label, cls in enumerate(("cats", "dogs")):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
            pixels[..., 0] //= 2 - label  # dogs redder: something to learn
            Image.fromarray(pixels).save(folder / f"{cls[:-1]}.{i}.jpg")
(root / "SYNTHETIC").write_text("random images of the book's split sizes (gpu-check.sh, no mirror): timing only\n")
print(f"{root}: SYNTHETIC (no PetImages mirror carried; random JPEGs of the book's split sizes, timing only)")
PY
  fi
  [ -d data/split/book ] || targets+=(data/split/book)
  [ -d data/split/keras_example ] || [ -f data/split/book/SYNTHETIC ] || targets+=(data/split/keras_example)
  if [ ${#targets[@]} -gt 0 ]; then
    # Once more if it stops early: a first run here once ended "did not complete" after every job finished.
    snakemake --cores "$cores" --scheduler greedy "${targets[@]}" ||
      snakemake --cores "$cores" --scheduler greedy "${targets[@]}" || return 1
  fi
  python3 - <<'PY'
from pathlib import Path
import numpy as np
for name in ("mnist", "fashion_mnist"):
    path = Path("data/prepared") / f"{name}.npz"
    if path.exists():
        print(f"{path}: present")
        continue
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"x_{s}": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 60000), ("test", 10000))}
    arrays |= {f"y_{s}": rng.integers(0, 10, n).astype(np.uint8) for s, n in (("train", 60000), ("test", 10000))}
    np.savez(path, **arrays)
    print(f"{path}: SYNTHETIC (random images and labels of the real shapes; timing only)")
PY
}

timing_params() {  # params.yaml with VGG16 weights that exist here (random ones when the real ones do not)
  python3 - "$1" <<'PY'
import sys
from pathlib import Path
import yaml
from cnnrepro.bench.pipeline import write_random_vgg16
from cnnrepro.train import vgg16_weights
from cnnrepro.train.engine.run_config import VGG16Settings
params = yaml.safe_load(Path("params.yaml").read_text())
try:
    vgg16_weights.resolve_keras_weights(VGG16Settings.from_params(params["train"]["vgg16"]), timeout_s=5)
    print("VGG16: ImageNet weights found")
except vgg16_weights.WeightsUnavailable:
    params["train"]["vgg16"] |= {"path": str(write_random_vgg16(Path(sys.argv[1]).with_suffix(".h5"))), "sha256": None}
    print("VGG16: RANDOM weights (timing only)")
Path(sys.argv[1]).write_text(yaml.safe_dump(params, sort_keys=False))
PY
}

echo "gpu-check $(date -u +%FT%TZ) parts: $parts tiny=$tiny" | tee -a "$summary"
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" | tee -a "$summary"
export -f data
export cores
first=$(wc -l <"$summary")  # the table shows this invocation's parts only
part data 300 bash -c data || exit 1
P=.gpu/params-timing.yaml  # (with its random VGG16 h5 beside it: not under $out, which comes back)
timing_params "$P" | tee -a "$summary"
for name in $parts; do
  case $name in
  check)
    if [ "$tiny" = 1 ]; then
      tiny_check="python3 scripts/fast_step_check.py --device cpu --variant baseline --epochs 1 --steps 2 --images 30"
      part check 300 bash -c "$tiny_check && $tiny_check --fault raise && echo 'RESULT fast step captured on CUDA: skipped: no CUDA'"
    else
      fsc="python3 scripts/fast_step_check.py"
      part check 300 bash -c "$fsc --variant augmentation; a=\$?; $fsc --variant baseline; b=\$?; \
        $fsc --variant baseline --epochs 1 --fault raise; c=\$?; $fsc --variant baseline --epochs 1 --fault disagree; \
        d=\$?; exit \$((a || b || c || d))"
    fi
    ;;
  keras)
    if [ "$tiny" = 1 ]; then
      part keras 300 python3 scripts/keras_gpu_check.py --tiny
    else
      part keras 400 python3 scripts/keras_gpu_check.py --variant baseline --epochs 2
    fi
    ;;
  pipeline)
    if [ "$tiny" = 1 ]; then
      part pipeline 900 cnnrepro bench --pipeline --device cpu --variants mnist_dense --seeds 0,1 --epochs-scale 0.1 --cores 2 --out "$out/pipeline.json"
    else
      part pipeline 480 cnnrepro bench --pipeline --cores "$cores" --out "$out/pipeline.json"
    fi
    ;;
  reproduction)
    if [ "$tiny" = 1 ]; then
      part reproduction 600 cnnrepro bench --params "$P" --reproduction --device cpu --variants baseline --epochs-scale 0.01
    else
      part reproduction 300 cnnrepro bench --params "$P" --reproduction --variants "$dvc_variants"
    fi
    ;;
  steps)
    for precision in fp32 tf32 bf16; do
      if [ "$tiny" = 1 ]; then
        part steps 600 cnnrepro bench --params "$P" --device cpu --variants mnist_dense --steps 2 --warmup 1 --naive-workers 0
        break  # no precisions on a CPU
      fi
      part steps 200 cnnrepro bench --params "$P" --variants augmentation,baseline,fine_tuning --steps 100 --warmup 10 \
        --precision "$precision"
    done
    ;;
  *) echo "unknown part $name (check, keras, pipeline, reproduction, steps)" | tee -a "$summary" ;;
  esac
done
echo "== table ($(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"))" | tee -a "$summary"
tail -n +"$((first + 1))" "$summary" | grep -E '^[a-z]+: exit' >"$out/.parts" || true
grep -h '^RESULT ' "$out"/check.log "$out"/keras.log 2>/dev/null | sed 's/^RESULT /  /' >>"$out/.parts" || true
tee -a "$summary" <"$out/.parts"
rm -f "$out/.parts"
