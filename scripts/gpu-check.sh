#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU and the CUDA toolkit but none of the Debian
# packages duet builds against (Open MPI, HDF5, oneDNN, ...) and no network.
#
#   scripts/gpu-check.sh pack [BUILD_DIR]    here, after a CUDA build (scripts/build.sh, nvcc found):
#                                            BUILD_DIR/gpu-check/ = the GPU test binaries and the
#                                            shared libraries they need that are neither the C
#                                            library nor CUDA's (at most 64 MiB)
#   scripts/gpu-check.sh run [BUNDLE_DIR [PART...]]
#                                            there: the CUDA cases of the kernel tests (every op
#                                            against the CPU reference), then the same under
#                                            compute-sanitizer memcheck, then 12 training steps of
#                                            the tiny model on the GPU against the CPU (model
#                                            tests), then the NCCL communicator's cases on one
#                                            GPU, then the speed benchmark (bench_gpu_train: an
#                                            H200-sized model in BF16 against cuBLAS's GEMM rate)
#                                            and the same model in PyTorch (eager and compiled) as
#                                            the baseline; prints a summary and exits non-zero
#                                            when a check failed or did not run (a speed target
#                                            missed is reported, not a failure). PARTs, to run
#                                            some only (each device command has a time limit):
#                                            kernels memcheck training nccl speed.
#                                            GPU_CHECK_DEVICE=cpu rehearses the speed part on the
#                                            CPU backend's small shape (its numbers mean nothing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-}"
# The CUDA cases: every op on the cuda backend, the BF16 GEMMs, and the backend's own checks
# (the host emulation's cases, *emulated*, run wherever the tests run; not here).
filter='BackendOps/EveryBackend.MatchesCpu/cuda_*:BackendOpsBf16/Bf16Ops.*/cuda_bf16_*:BackendTable.Cuda*:Backends/DeviceTimingOn.*/cuda:Backends/SumSquaresRanges.*/cuda:-*emulated*'
# Training on the GPU: the model's buffers in the backend's memory, the syncs before the host
# reads, 12 steps against the CPU and a rerun, 100 steps of BF16 GEMMs against FP32.
train_filter='CudaTraining.*:-CudaTraining.TheEmulated*'
max_bytes=$((64 * 1024 * 1024))

pack() {
  local build="${1:-$here/build}"
  make -C "$build" -j"$(nproc)" test_kernels test_model test_nccl_gpu bench_gpu_train >/dev/null
  ldd "$build/tests/test_kernels" | grep -q libcudart ||
    { echo "gpu-check: $build is not a CUDA build (configure with nvcc found, or -DDUET_CUDA=ON)" >&2; exit 2; }
  local out="$build/gpu-check"
  rm -rf "$out" && mkdir -p "$out/lib"
  cp "$build/tests/test_kernels" "$build/tests/test_model" "$build/tests/test_nccl_gpu" "$build/bench/bench_gpu_train" "$out/"
  cp "$here/scripts/gpu-check.sh" "$here/bench/gpu/torch_baseline.py" "$here/bench/gpu/speed_summary.py" "$out/"
  # Every library the binary loads, except the C library's own and CUDA's (the GPU machine
  # has its toolkit and driver): libstdc++ too, in case that machine's is older.
  ldd "$out/test_kernels" "$out/test_model" "$out/test_nccl_gpu" "$out/bench_gpu_train" | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libcuda.so*|libcudart.so*|libcublas*.so*|libnccl.so*) ;;
      *) cp -L "$lib" "$out/lib/" ;;
    esac
  done
  local bytes
  bytes=$(du -sb "$out" | cut -f1)
  echo "gpu-check: packed $(ls "$out/lib" | wc -l) libraries, test_kernels, test_model, test_nccl_gpu, bench_gpu_train and torch_baseline.py into $out ($((bytes / 1024 / 1024)) MiB)"
  if ((bytes > max_bytes)); then
    echo "gpu-check: $out is $bytes bytes, over the 64 MiB a GPU machine takes" >&2
    exit 1
  fi
}

# passed, failed, skipped: the GoogleTest results in log $1.
count_results() {
  passed=$(grep -c '^\[       OK \]' "$1" || true)
  failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$1" || true)
  skipped=$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$1" || true)
}

# The summary so far, printed when the script ends however it ends (a device command killed at
# its time limit still reports what finished).
summary=()
note() {
  summary+=("$1")
  echo "gpu-check: $1"
}
print_summary() {
  echo "== gpu-check summary =="
  printf '%s\n' "${summary[@]}"
}

# A part that is a GoogleTest binary of the bundle: WHAT BINARY FILTER LOG_NAME PATTERN LINES.
# Passes when its cases ran and passed, none skipped; prints the log's lines matching PATTERN
# (at most LINES). Sets status (run's) on failure.
gtest_part() {
  local what=$1 binary=$2 filter=$3 log="$dir/$4.log" pattern=$5 lines=$6
  if [ ! -x "$dir/$binary" ]; then
    status=1
    note "$what: no $binary in $dir: NOT run"
    return 0
  fi
  "$dir/$binary" --gtest_filter="$filter" >"$log" 2>&1 || status=1
  count_results "$log"
  note "$what: $passed passed, $failed failed, $skipped skipped ($log)"
  ((skipped == 0 && passed > 0)) || status=1
  grep -E "$pattern" "$log" | head -"$lines" | sed 's/^/  /' || true
}

# PART... : kernels memcheck training nccl speed (default: all, in that order).
run() {
  local dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
  shift || true
  local parts=" ${*:-kernels memcheck training nccl speed} "
  [ -x "$dir/test_kernels" ] || { echo "gpu-check: no test_kernels in $dir (run 'pack' on the build machine)" >&2; exit 2; }
  local cuda="${CUDA_HOME:-/usr/local/cuda}"
  local outer_ld="${LD_LIBRARY_PATH:-}"  # PyTorch's own: it brings its CUDA libraries
  export LD_LIBRARY_PATH="$dir/lib:$cuda/lib64:$cuda/lib:${LD_LIBRARY_PATH:-}"
  # NCCL: the toolkit's, else the one a PyTorch installation brings (pip's nvidia-nccl).
  if ! ls "$cuda"/lib64/libnccl.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libnccl.so; then
    local nccl_lib
    nccl_lib=$(LD_LIBRARY_PATH="$outer_ld" "${PYTHON:-python3}" -c \
      'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
    [ -n "$nccl_lib" ] && [ -d "$nccl_lib" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$nccl_lib" &&
      echo "gpu-check: NCCL from $nccl_lib"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  local status=0 passed failed skipped
  trap print_summary EXIT
  # 1. Every op on the GPU against the CPU reference. A skipped case here means no device.
  if [[ $parts == *" kernels "* ]]; then
    local log="$dir/kernels.log"
    if "$dir/test_kernels" --gtest_filter="$filter" >"$log" 2>&1; then :; else status=1; fi
    count_results "$log"
    note "kernel tests on the GPU: $passed passed, $failed failed, $skipped skipped ($log)"
    ((skipped == 0)) || status=1
    grep -E '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$log" | sed 's/^/  /' || true
    ((skipped == 0)) || grep -m1 -E 'absent|does not implement' "$log" | sed 's/^/  why skipped: /' || true
  fi
  # 2. The same under compute-sanitizer memcheck: out-of-bounds and misaligned accesses,
  #    leaks of device memory.
  if [[ $parts == *" memcheck "* ]]; then
    local sanitizer=""
    for c in compute-sanitizer "$cuda/bin/compute-sanitizer" "$cuda/compute-sanitizer/compute-sanitizer"; do
      if command -v "$c" >/dev/null 2>&1; then sanitizer="$c"; break; fi
    done
    if [ -n "$sanitizer" ]; then
      local mlog="$dir/memcheck.log"
      local t0=$SECONDS rc=0
      timeout 300 "$sanitizer" --tool memcheck --leak-check full --error-exitcode 97 "$dir/test_kernels" \
        --gtest_filter="$filter" >"$mlog" 2>&1 || rc=$?
      if ((rc == 0)); then
        note "compute-sanitizer memcheck: clean ($(grep -m1 -o 'ERROR SUMMARY: [0-9]* errors' "$mlog" || echo 'no summary line'); $((SECONDS - t0)) s)"
      else
        status=1
        if ((rc == 124)); then
          note "compute-sanitizer memcheck: NOT finished within 300 s ($mlog)"
        elif grep -q 'Device not supported' "$mlog"; then  # some sandboxed runtimes: no sanitizer there
          note "compute-sanitizer memcheck: NOT run: the sanitizer refused this machine's device ('Device not supported'; $mlog)"
        else
          note "compute-sanitizer memcheck: FAILED ($(grep -m1 -o 'ERROR SUMMARY: [0-9]* errors' "$mlog" || echo "exit status $rc"); $mlog)"
        fi
      fi
    else
      status=1
      note "compute-sanitizer: not found under $cuda: memcheck NOT run"
    fi
  fi
  # 3. Training on the GPU against the CPU.
  [[ $parts == *" training "* ]] && gtest_part "training on the GPU vs the CPU" test_model "$train_filter" \
    training 'Failure|step [0-9]+' 20
  # 4. The NCCL data plane on one GPU: a one-rank communicator over every collective, from
  #    host and device memory, and a receive nobody sends ended by abort.
  [[ $parts == *" nccl "* ]] && gtest_part "NCCL communicator on the GPU" test_nccl_gpu \
    'NcclComm.*:-NcclComm.WithoutAGpu*' nccl 'Failure|what\(\)' 10
  # 5. Speed: duet's BF16 training step on a model sized for one H200 against the cuBLAS BF16
  #    GEMM rate on its largest GEMM (same run), then the same model in PyTorch on the same GPU,
  #    eager and compiled, each under its own time limit. Results of an earlier run are removed
  #    first: a run that fails reports nothing rather than old numbers.
  if [[ $parts == *" speed "* ]]; then
    local blog="$dir/bench.log" bjson="$dir/bench.json" plog="$dir/torch.log" t0=$SECONDS
    local device="${GPU_CHECK_DEVICE:-cuda}"
    rm -f "$bjson" "$dir"/torch-*.json
    if [ -x "$dir/bench_gpu_train" ] && timeout 240 "$dir/bench_gpu_train" --benchmark_filter="/$device/" \
         --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
         --benchmark_out="$bjson" --benchmark_out_format=json >"$blog" 2>&1 &&
       [ -s "$bjson" ] && ! grep -q '"error_occurred": true' "$bjson"; then
      note "speed benchmark: ran in $((SECONDS - t0)) s ($blog)"
    else
      status=1
      note "speed benchmark: FAILED or NOT run after $((SECONDS - t0)) s ($blog)"
      tail -5 "$blog" | sed 's/^/  /' || true
    fi
    local python="${PYTHON:-python3}" torch_jsons=()
    : >"$plog"
    if LD_LIBRARY_PATH="$outer_ld" "$python" -c 'import torch' 2>/dev/null; then
      local mode limit
      for mode in eager compile; do
        limit=150
        [ "$mode" = compile ] && limit=240  # compiling 16 blocks takes a minute or two
        t0=$SECONDS
        if LD_LIBRARY_PATH="$outer_ld" timeout "$limit" "$python" "$dir/torch_baseline.py" --device "$device" --mode "$mode" \
             --json "$dir/torch-$mode.json" >>"$plog" 2>&1; then
          note "PyTorch $mode: ran in $((SECONDS - t0)) s ($plog)"
        else
          status=1
          note "PyTorch $mode: FAILED or timed out after $((SECONDS - t0)) s ($plog)"
          tail -3 "$plog" | sed 's/^/  /' || true
        fi
        [ -s "$dir/torch-$mode.json" ] && torch_jsons+=("$dir/torch-$mode.json")
      done
    else
      status=1
      note "PyTorch baseline: NOT run ($python cannot import torch)"
    fi
    if [ -s "$bjson" ]; then
      while IFS= read -r line; do note "$line"; done < <(LD_LIBRARY_PATH="$outer_ld" "$python" "$dir/speed_summary.py" "$bjson" "${torch_jsons[@]}")
    fi
  fi
  exit $status
}

case "$mode" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
