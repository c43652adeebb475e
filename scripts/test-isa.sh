#!/usr/bin/env bash
# The numeric parity tests under other CPU code paths: the bounds in tests/tolerances.py claim to hold on
# any x86 CPU, so force the kernels an older or another vendor's CPU would get, one setting at a time, on
# this one. Each setting caps what oneDNN (PyTorch's mkldnn and TensorFlow's oneDNN ops), MKL and ATen's
# own vectorised kernels may use, or turns TensorFlow's oneDNN ops off (its Eigen kernels instead):
#
#   avx2     ONEDNN/DNNL_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2
#   sse41    ONEDNN/DNNL_MAX_CPU_ISA=SSE41, MKL_ENABLE_INSTRUCTIONS=SSE4_2, ATEN_CPU_CAPABILITY=default
#   eigen    TF_ENABLE_ONEDNN_OPTS=0, ATEN_CPU_CAPABILITY=default (no oneDNN in TensorFlow, scalar ATen)
#   native   nothing forced (what this CPU picks)
#
#   bash scripts/test-isa.sh                      # every setting, the default tests
#   bash scripts/test-isa.sh avx2 eigen           # some settings
#   ISA_TESTS="tests/test_keras_parity.py" bash scripts/test-isa.sh avx2
#
# A cap above what the CPU has changes nothing (the libraries only ever lower it). Prints, per setting,
# the ATen capability PyTorch reports under it, then pytest's closing line; exits non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD/src} MPLBACKEND=Agg
# Numerics compared between two implementations (frameworks, memory formats, step paths), not the slow runs.
DEFAULT_TESTS="tests/test_keras_parity.py::test_first_batch_and_first_step_match_the_pytorch_port
tests/test_keras_parity.py::test_keras2_rmsprop_is_the_books_rule_and_keras3_rmsprop_is_not
tests/test_fast_step.py tests/test_optim.py tests/test_vgg16_convert.py
tests/test_bench.py::test_channels_last_gives_the_same_losses_and_weights"
read -r -a tests <<<"$(echo ${ISA_TESTS:-$DEFAULT_TESTS})"

setting_env() {
  case "$1" in
    avx2) echo "ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2" ;;
    sse41) echo "ONEDNN_MAX_CPU_ISA=SSE41 DNNL_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 ATEN_CPU_CAPABILITY=default" ;;
    eigen) echo "TF_ENABLE_ONEDNN_OPTS=0 ATEN_CPU_CAPABILITY=default" ;;
    native) echo "" ;;
    *) echo "test-isa: unknown setting '$1' (known: avx2 sse41 eigen native)" >&2; return 1 ;;
  esac
}

settings=${*:-native avx2 sse41 eigen}
failed=()
summary=()
for name in $settings; do
  vars=$(setting_env "$name") || exit 2
  # shellcheck disable=SC2086  # the settings are words by design
  capability=$(env $vars "$PYTHON" -c "import torch; print(torch.backends.cpu.get_cpu_capability())" 2>/dev/null)
  echo "== test-isa $name: ${vars:-(nothing forced)}; ATen capability: $capability"
  log=$(mktemp)
  # shellcheck disable=SC2086
  env $vars "$PYTHON" -m pytest -q -p no:cacheprovider -m "not slow" "${tests[@]}" 2>&1 | tee "$log" | tail -n 15
  rc=${PIPESTATUS[0]}
  summary+=("$name ($capability): $(tail -n 1 "$log")")
  rm -f "$log"
  [ "$rc" = 0 ] || failed+=("$name")
done
echo "== test-isa summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-isa: FAILED under: ${failed[*]}"
  exit 1
fi
