#!/usr/bin/env bash
# The one command to run on a GPU machine (issues 13 and 18), from the repository root, with .devdata/, .devshared/
# and .whl/ carried along (scripts/prepare_devdata.py makes .devdata and .devshared, the slim ../shared the CUDA tests
# read, and .whl: the facenet-pytorch 2.5.3, setuptools and wheel wheels):
#
#     OUT=/some/folder RESTOREVER_COMMIT=<hash> bash scripts/gpu_session.sh     # TOTAL_S=480 by default
#
# (.git does not travel, so pass the commit being measured; give the device call timeout_s=560.)
#
# 1. installs restorever non-editable (as users do) and the carried facenet-pytorch wheel;
# 2. checks the installed package from an unrelated folder (`restorever protocols`);
# 3. runs the CUDA tests (`pytest -m cuda`) under a time limit, the one that compiles a UNet last and on its own;
# 4. runs scripts/bench_gpu.py with the seconds that are left.
# Everything goes under $OUT: session.log (steps 1-3), pytest_cuda.log, pytest_cuda_compile.log, bench_gpu.log,
# bench_gpu.json.
# No step stops the session: each logs its exit status and the next one runs.
set -u
OUT=${OUT:-$PWD/gpu_out}
TOTAL_S=${TOTAL_S:-480}        # the whole session aims to end within this many seconds (worst case +65 s)
PYTEST_S=${PYTEST_S:-100}      # time limit of the CUDA tests but the compile one
COMPILE_TEST_S=${COMPILE_TEST_S:-60}  # time limit of the CUDA graph + compile test
PY=${PYTHON:-python3}
BENCH_ARGS=${BENCH_ARGS:-}     # extra bench_gpu.py arguments (a CPU dry run: "--device cpu --quick")
mkdir -p "$OUT"
LOG="$OUT/session.log"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
step() { echo "== $* (t=$(elapsed) s)" | tee -a "$LOG"; }

step "environment"
{
  date -u; uname -a; git rev-parse --short HEAD 2>/dev/null || echo "no git"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | head -5
  $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} >> "$LOG" 2>&1

step "pip install --no-deps --no-build-isolation ."
$PY -m pip install --no-deps --no-build-isolation . >> "$LOG" 2>&1; RC=$?; echo "exit $RC" >> "$LOG"
if [ "$RC" -ne 0 ] && ls .whl/setuptools-*.whl > /dev/null 2>&1; then
  # --no-build-isolation builds with the machine's own setuptools; one older than 70.1 without `wheel` installed
  # fails with "invalid command 'bdist_wheel'". The carried setuptools and wheel wheels fix that; then retry once.
  step "pip install the carried setuptools + wheel, then the package again"
  $PY -m pip install --no-deps .whl/setuptools-*.whl .whl/wheel-*.whl >> "$LOG" 2>&1; echo "exit $?" >> "$LOG"
  $PY -m pip install --no-deps --no-build-isolation . >> "$LOG" 2>&1; echo "exit $?" >> "$LOG"
fi
step "pip install facenet-pytorch wheel"
$PY -m pip install --no-deps .whl/facenet_pytorch-2.5.3-*.whl >> "$LOG" 2>&1; echo "exit $?" >> "$LOG"

step "installed package from an unrelated folder"
( cd /tmp && $PY -c "import restorever, sys; print('restorever', restorever.__file__)" && \
  timeout 60 $PY -m restorever protocols ) >> "$LOG" 2>&1; RC=$?; echo "exit $RC" >> "$LOG"
if ! ( cd /tmp && $PY -c "import restorever" ) 2>/dev/null; then
  echo "FALLBACK: the install failed; using the source tree through PYTHONPATH=$PWD" | tee -a "$LOG"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

step "CUDA tests (limit ${PYTEST_S} s)"
[ -d .devshared ] && export RESTOREVER_SHARED="$PWD/.devshared"   # slim ../shared made by prepare_devdata.py
timeout -k 5 "$PYTEST_S" $PY -m pytest -v -p no:cacheprovider -m cuda -rs --durations=10 -k "not compile" \
  tests/test_cuda.py tests/recognizers/test_iresnet.py tests/recognizers/test_round21_mutants_recognizers.py \
  > "$OUT/pytest_cuda.log" 2>&1
echo "pytest exit $?" | tee -a "$LOG"
tail -5 "$OUT/pytest_cuda.log" >> "$LOG"
step "CUDA graph + compile test (limit ${COMPILE_TEST_S} s; it compiles a UNet, so it runs on its own)"
timeout -k 5 "$COMPILE_TEST_S" $PY -m pytest -v -p no:cacheprovider -m cuda -rs -k "compile" tests/test_cuda.py \
  > "$OUT/pytest_cuda_compile.log" 2>&1
echo "pytest exit $?" | tee -a "$LOG"
tail -3 "$OUT/pytest_cuda_compile.log" >> "$LOG"

LEFT=$(( TOTAL_S - $(elapsed) - 15 ))
[ "$LEFT" -lt 60 ] && LEFT=60
step "bench_gpu.py --budget-s $LEFT"
timeout -k 5 $(( LEFT + 60 )) $PY scripts/bench_gpu.py --data .devdata --out "$OUT/bench_gpu.json" --budget-s "$LEFT" $BENCH_ARGS \
  > "$OUT/bench_gpu.log" 2>&1
echo "bench exit $?" | tee -a "$LOG"
step "done"
ls -la "$OUT" >> "$LOG"
