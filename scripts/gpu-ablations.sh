#!/usr/bin/env bash
# The Dogs-vs-Cats ablations of the augmentation variant on one GPU, in one go, under 8 minutes on an H200:
# faithful + keras_2_1_3_augmentation + naive_torch_port + bilinear_resize, seeds 0 1 2 (12 trainings,
# full documented budget: 100 epochs x 100 steps x batch 32), all side by side on the one GPU, then the
# report, whose "what moves the figures" table is printed last.
#
# On a bare CUDA machine, prepared as ../shared/gpu/README.md says (.gpu/ with wheels, device-env.sh and
# the PetImages mirror), from the project root:   bash scripts/gpu-ablations.sh
# Here, to try the script end to end on a CPU (a small mirror laid out like ../shared/datasets):
#   TINY=1 DEVICE=cpu CNNREPRO_DATA_MIRROR=/path/to/small/mirror bash scripts/gpu-ablations.sh
#
# Environment: OUT (logs, reports; default .gpu/ablations-out), WORK (data, runs; default /tmp/cnnrepro-ablations),
# PARALLEL (trainings at once; default all 12), DEVICE (train.device; default cuda), TINY=1 (2 steps per run).
set -uo pipefail
ROOT=$PWD
OUT=${OUT:-$ROOT/.gpu/ablations-out}
WORK=${WORK:-/tmp/cnnrepro-ablations}
DEVICE=${DEVICE:-cuda}
SEEDS="0 1 2"
ABLATIONS="keras_2_1_3_augmentation naive_torch_port bilinear_resize"
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
if [ -f .gpu/device-env.sh ]; then source .gpu/device-env.sh; fi
# The data mirror: the carried one (device-env.sh sets it), else this workplace's.
export CNNREPRO_DATA_MIRROR=${CNNREPRO_DATA_MIRROR:-$ROOT/../shared/datasets}
export OMP_NUM_THREADS=1
started=$(date +%s)

# Params: the shipped ones, with only the augmentation variant and its three ablations in the grid.
python3 - "$ROOT/params.yaml" "$WORK/params.yaml" "$DEVICE" "${TINY:-0}" "$SEEDS" "$ABLATIONS" <<'EOF'
import sys, yaml
src, dst, device, tiny, seeds, names = sys.argv[1:]
p = yaml.safe_load(open(src))
p["train"]["device"] = device
p["train"]["seeds"] = [int(s) for s in seeds.split()]
p["train"]["variants"] = {"pets": ["augmentation"], "pets_fine_tuning": [], "idx": [], "keras_example": []}
p["train"]["image_cache_dir"] = "data/cache"
if tiny == "1":  # a smoke test of the script itself: 2 steps per run, a small split, any archive
    p["train"]["overrides"] = {"augmentation": {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 1}}
    p["split"]["book"] = {"train": 6, "validation": 3, "test": 3}
    p["download"]["petimages"]["sha256"] = None
p["ablations"]["run"] = {"pets": [{"variant": "augmentation", "ablation": a} for a in names.split()],
                         "pets_fine_tuning": [], "idx": [], "keras_example": []}
p["tracking"]["uri"] = "sqlite:///mlflow.db"
yaml.safe_dump(p, open(dst, "w"), sort_keys=False)
EOF
cd "$WORK" || exit 1
P="--params params.yaml"

step() {  # step NAME SECONDS COMMAND...: one line of status, the log in $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($(( $(date +%s) - t0 )) s)" | tee -a "$OUT/steps.txt"
  return $rc
}
: > "$OUT/steps.txt"
step download 120 cnnrepro download $P --dataset petimages --out data/raw/petimages || exit 1
step clean 180 cnnrepro clean $P --raw data/raw/petimages --out data/clean || exit 1
step split 120 cnnrepro split $P --clean data/clean/petimages --out data/split || exit 1
cnnrepro tracking $P init > "$OUT/tracking.log" 2>&1

# The 12 trainings, side by side (each one small for an H200); one log each, gathered into trainings.log.
jobs=()
for s in $SEEDS; do
  jobs+=("augmentation - $s")
  for a in $ABLATIONS; do jobs+=("augmentation $a $s"); done
done
train_one() {
  local v=$1 a=$2 s=$3 out extra=""
  if [ "$a" = "-" ]; then out=runs/torch/$v/seed$s; else out=runs/torch/$v/ablation-$a/seed$s; extra="--ablation $a"; fi
  cnnrepro train --params params.yaml --framework torch --variant "$v" --seed "$s" --data data/split/book \
    --out "$out" $extra > "logs-$v-$a-$s.txt" 2>&1
  echo "$v $a seed$s rc=$? $(tail -1 "logs-$v-$a-$s.txt")"
}
export -f train_one
t0=$(date +%s)
printf '%s\n' "${jobs[@]}" | timeout 420 xargs -P "${PARALLEL:-${#jobs[@]}}" -L 1 bash -c 'train_one "$@"' _ \
  | tee "$OUT/trainings.txt"
echo "trainings: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/steps.txt"
cat logs-*.txt > "$OUT/trainings.log" 2>/dev/null

step report 120 cnnrepro report $P --runs runs --clean-summary data/clean/summary.json --out reports
cp reports/comparison.md reports/effects.csv "$OUT/" 2>/dev/null
echo "total: $(( $(date +%s) - started )) s" | tee -a "$OUT/steps.txt"
# Last: the effects table (percentage points), as the report shows it.
python3 - reports/effects.csv <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
f = lambda v: "—" if v in ("", None) else f"{float(v):+.2f}"
print(f"{'variant':<14}{'ablation':<26}{'faithful %':>11}{'ablated %':>11}{'effect pp':>11}  95% CI pp        n")
for r in rows:
    fm = "—" if not r["faithful_mean"] else f"{100 * float(r['faithful_mean']):.2f}"
    am = "—" if not r["ablation_mean"] else f"{100 * float(r['ablation_mean']):.2f}"
    ci = "—" if not r["ci_low_pp"] else f"[{f(r['ci_low_pp'])}, {f(r['ci_high_pp'])}]"
    print(f"{r['variant']:<14}{r['ablation']:<26}{fm:>11}{am:>11}{f(r['effect_pp']):>11}  {ci:<16} "
          f"{r['faithful_n']}/{r['ablation_n']}")
EOF
