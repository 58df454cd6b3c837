#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU and the CUDA toolkit but none of the Debian
# packages duet builds against (Open MPI, HDF5, oneDNN, ...) and no network.
#
#   scripts/gpu-check.sh pack [BUILD_DIR]    here, after a CUDA build (scripts/build.sh, nvcc found):
#                                            BUILD_DIR/gpu-check/bundle.tar.xz = the GPU test
#                                            binaries, duet, Open MPI's runtime, the data, and the
#                                            shared libraries they need that are neither the C
#                                            library nor CUDA's (at most 64 MiB packed)
#   scripts/gpu-check.sh run [BUNDLE_DIR [PART...]]
#                                            there (unpacks the bundle first): the CUDA cases of
#                                            the kernel tests (every op against the CPU
#                                            reference), then the same under compute-sanitizer
#                                            memcheck, then 12 training steps of the tiny model on
#                                            the GPU against the CPU (model tests), then the NCCL
#                                            communicator's cases on one GPU, then duet itself
#                                            (`duet train` on the GPU against the CPU, its
#                                            checkpoint resumed on the CPU, PP 2 DualPipe with two
#                                            ranks on the GPU under the bundle's mpirun, a too-wide
#                                            head refused), then the speed benchmark
#                                            (bench_gpu_train: an H200-sized model in BF16 against
#                                            cuBLAS's GEMM rate) and the same model in PyTorch
#                                            (eager and compiled) as the baseline; prints a summary
#                                            and exits non-zero when a check failed or did not run
#                                            (a speed target missed is reported, not a failure).
#                                            PARTs, to run some only (each device command has a
#                                            time limit): kernels memcheck training nccl duet speed.
#                                            GPU_CHECK_DEVICE=cpu rehearses the duet and speed
#                                            parts on the CPU backend (the speed part's numbers
#                                            then mean nothing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-}"
# The CUDA cases: every op on the cuda backend, the BF16 GEMMs, and the backend's own checks
# (the host emulation's cases, *emulated*, run wherever the tests run; not here).
filter='BackendOps/EveryBackend.MatchesCpu/cuda_*:BackendOpsBf16/Bf16Ops.*/cuda_bf16_*:BackendTable.Cuda*:Backends/DeviceTimingOn.*/cuda:Backends/SumSquaresRanges.*/cuda:Backends/AdamWGradScale.*/cuda:-*emulated*'
# Training on the GPU: the model's buffers in the backend's memory, the syncs before the host
# reads, 12 steps against the CPU and a rerun, 100 steps of BF16 GEMMs against FP32.
train_filter='CudaTraining.*:-CudaTraining.TheEmulated*'
max_bytes=$((64 * 1024 * 1024))

pack() {
  local build="${1:-$here/build}"
  cmake --build "$build" -j"$(nproc)" --target test_kernels test_model test_nccl_gpu bench_gpu_train duet >/dev/null
  ldd "$build/tests/test_kernels" | grep libcudart >/dev/null ||
    { echo "gpu-check: $build is not a CUDA build (configure with nvcc found, or -DDUET_CUDA=ON)" >&2; exit 2; }
  local out="$build/gpu-check" stage="$build/gpu-check.stage"
  rm -rf "$out" "$stage" && mkdir -p "$out" "$stage/lib"
  cp "$build/tests/test_kernels" "$build/tests/test_model" "$build/tests/test_nccl_gpu" "$build/bench/bench_gpu_train" \
    "$build/apps/duet" "$stage/"
  cp "$here/scripts/gpu-check.sh" "$here/bench/gpu/torch_baseline.py" "$here/bench/gpu/speed_summary.py" "$stage/"
  # duet end to end needs Open MPI's runtime as well (mpirun, its components and help texts,
  # PMIx's plugins), relocated by environment (bundle_env below), and the default job's data.
  local pkglib pmix_lib
  pkglib=$(ompi_info --path pkglibdir --parsable | cut -d: -f3)
  pmix_lib=$(dirname "$(readlink -f "$(ldd "$pkglib/mca_pmix_ext3x.so" | awk '/libpmix/{print $3}')")")
  mkdir -p "$stage/ompi/bin" "$stage/ompi/components" "$stage/ompi/etc" "$stage/pmix/components" "$stage/data"
  cp "$(ompi_info --path bindir --parsable | cut -d: -f3)/orterun" "$stage/ompi/bin/" && ln -s orterun "$stage/ompi/bin/mpirun"
  cp "$pkglib"/*.so "$stage/ompi/components/"
  cp -r "$(ompi_info --path pkgdatadir --parsable | cut -d: -f3)" "$stage/ompi/share"
  cp "$(ompi_info --path sysconfdir --parsable | cut -d: -f3)"/*.conf "$stage/ompi/etc/"
  cp "$pmix_lib"/pmix/*.so "$stage/pmix/components/"
  cp -r "$pmix_lib/../share/pmix" "$stage/pmix/share"
  cp -rL "$(sed -n 's/^ *path: *\([^ #]*\).*/\1/p' "$here/configs/tiny.yaml")/." "$stage/data/"
  # Every library these load, except the C library's own and CUDA's (the GPU machine has its
  # toolkit and driver). libstdc++ and libgcc_s apart, in lib/cxx: for a machine whose own are
  # too old (run uses them only then — they need this machine's C library version or newer).
  mkdir -p "$stage/lib/cxx"
  ldd "$stage"/test_kernels "$stage"/test_model "$stage"/test_nccl_gpu "$stage"/bench_gpu_train "$stage"/duet \
    "$stage"/ompi/bin/orterun "$stage"/ompi/components/*.so "$stage"/pmix/components/*.so 2>/dev/null |
    awk '/=> \//{print $3}' | sort -u | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libcuda.so*|libcudart.so*|libcublas*.so*|libnccl.so*) ;;
        libstdc++.so.*|libgcc_s.so.*) cp -L "$lib" "$stage/lib/cxx/" ;;
        *) cp -L "$lib" "$stage/lib/" ;;
      esac
    done
  # xz: ~100 MiB of binaries and libraries travel as ~25 MiB; `run` unpacks them.
  tar -C "$stage" -cf - . | xz -T0 -6 >"$out/bundle.tar.xz"
  local bytes unpacked
  bytes=$(du -sb "$out" | cut -f1)
  unpacked=$(du -sb "$stage" | cut -f1)
  rm -rf "$stage"
  echo "gpu-check: packed test_kernels, test_model, test_nccl_gpu, bench_gpu_train, duet, Open MPI's runtime," \
    "the data and $(tar -tJf "$out/bundle.tar.xz" | grep -c '^./lib/.*\.so') libraries into $out/bundle.tar.xz" \
    "($((bytes / 1024 / 1024)) MiB; $((unpacked / 1024 / 1024)) MiB unpacked)"
  if ((bytes > max_bytes)); then
    echo "gpu-check: $out is $bytes bytes, over the 64 MiB a GPU machine takes" >&2
    exit 1
  fi
}

# The bundle's Open MPI and PMIx, relocated to DIR by their installation-directory variables.
bundle_env() {
  local d=$1 v
  # Settings an image may carry for an MPI of its own would steer the bundle's.
  for v in $(env | grep -oE '^(OMPI_MCA_|OPAL_|PMIX_|UCX_)[A-Za-z0-9_]*' || true); do unset "$v"; done
  export OPAL_PREFIX="$d/ompi" OPAL_EXEC_PREFIX="$d/ompi" OPAL_BINDIR="$d/ompi/bin" OPAL_LIBDIR="$d/lib"
  export OPAL_PKGLIBDIR="$d/ompi/components" OPAL_SYSCONFDIR="$d/ompi/etc" OPAL_DATAROOTDIR="$d/ompi"
  export OPAL_DATADIR="$d/ompi" OPAL_PKGDATADIR="$d/ompi/share"
  export PMIX_INSTALL_PREFIX="$d/pmix" PMIX_PREFIX="$d/pmix" PMIX_EXEC_PREFIX="$d/pmix" PMIX_LIBDIR="$d/lib"
  export PMIX_PKGLIBDIR="$d/pmix/components"
  export PMIX_DATADIR="$d/pmix" PMIX_PKGDATADIR="$d/pmix/share"
  export PATH="$d/ompi/bin:$PATH"
  # One machine, maybe root, maybe without ssh: mpirun starts local ranks itself, and a lone
  # `duet train` initialises MPI without starting a daemon.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
  export OMPI_MCA_ess_singleton_isolated=1
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
  local parts=" ${*:-kernels memcheck training nccl duet speed} "
  dir=$(cd "$dir" && pwd)  # absolute: the duet part runs in a folder of its own
  # The bundle travels packed (pack): unpacked here, by Python if this machine has no xz, once
  # per bundle (by its checksum), over a clean folder.
  if [ -f "$dir/bundle.tar.xz" ]; then
    local sum
    sum=$(sha256sum "$dir/bundle.tar.xz" | cut -d' ' -f1)
    if [ "$(cat "$dir/.unpacked" 2>/dev/null)" != "$sum" ]; then
      rm -rf "$dir"/{lib,ompi,pmix,data,duet-runs} "$dir"/{test_kernels,test_model,test_nccl_gpu,bench_gpu_train,duet}
      if command -v xz >/dev/null; then
        tar -C "$dir" -xJf "$dir/bundle.tar.xz"
      else
        "${PYTHON:-python3}" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$dir/bundle.tar.xz" "$dir"
      fi
      echo "$sum" >"$dir/.unpacked"
    fi
  fi
  [ -x "$dir/test_kernels" ] || { echo "gpu-check: no test_kernels in $dir (run 'pack' on the build machine)" >&2; exit 2; }
  local cuda="${CUDA_HOME:-/usr/local/cuda}"
  local outer_ld="${LD_LIBRARY_PATH:-}"  # PyTorch's own: it brings its CUDA libraries
  export LD_LIBRARY_PATH="$dir/lib:$cuda/lib64:$cuda/lib:${LD_LIBRARY_PATH:-}"
  # This machine's libstdc++ where it is new enough for the binaries, else the bundle's (built
  # on Debian 12: it needs a C library of version 2.36 or newer, as the bundle's libevent does).
  if ! "$dir/test_kernels" --gtest_list_tests >/dev/null 2>&1; then
    echo "gpu-check: the binaries do not start with this machine's libstdc++ (C library $(getconf GNU_LIBC_VERSION 2>/dev/null || echo '?')): using the bundle's"
    "$dir/test_kernels" --gtest_list_tests 2>&1 >/dev/null | head -3 | sed 's/^/  /' || true
    export LD_LIBRARY_PATH="$dir/lib/cxx:$LD_LIBRARY_PATH"
  fi
  # NCCL: the toolkit's, else the one a PyTorch installation brings (pip's nvidia-nccl).
  if ! ls "$cuda"/lib64/libnccl.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep libnccl.so >/dev/null; then
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
  # 5. duet itself on the GPU, with the bundle's Open MPI, HDF5 and the rest: `duet train
  #    --runtime.device cuda` against the CPU, its checkpoint resumed on the CPU, two ranks of a
  #    PP 2 DualPipe job on the one GPU (the staged path: device → host → MPI → host → device)
  #    against one process, and a head too wide for the CUDA kernels refused by name.
  [[ $parts == *" duet "* ]] && duet_part
  # 6. Speed: duet's BF16 training step on a model sized for one H200 against the cuBLAS BF16
  #    GEMM rate on its largest GEMM (same run), then the same model in PyTorch on the same GPU,
  #    eager and compiled, each under its own time limit. Results of an earlier run are removed
  #    first: a run that fails reports nothing rather than old numbers.
  if [[ $parts == *" speed "* ]]; then
    local blog="$dir/bench.log" bjson="$dir/bench.json" plog="$dir/torch.log" t0=$SECONDS
    local device="${GPU_CHECK_DEVICE:-cuda}"
    local speed_end=$((SECONDS + 570))  # the part ends inside a device command's 10 minutes, summary included
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
        ((limit <= speed_end - SECONDS)) || limit=$((speed_end - SECONDS))
        if ((limit < 30)); then
          status=1
          note "PyTorch $mode: NOT run: the speed part's 570 s are spent"
          continue
        fi
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

# Losses of run A and run B (metrics.jsonl) at steps FROM..TO within REL of each other; prints
# the worst relative difference.
compare_losses() {
  "${PYTHON:-python3}" - "$@" <<'PY'
import json, sys
a, b, lo, hi, rel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def losses(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "step" in r and "loss" in r:
            out[r["step"]] = r["loss"]
    return out
la, lb = losses(a), losses(b)
missing = [s for s in range(lo, hi + 1) if s not in la or s not in lb]
if missing:
    print("steps %s missing" % missing[:5]); sys.exit(1)
worst = max(abs(la[s] - lb[s]) / abs(la[s]) for s in range(lo, hi + 1))
print("worst relative difference %.2e over steps %d-%d (bound %g)" % (worst, lo, hi, rel))
sys.exit(0 if worst <= rel else 1)
PY
}

duet_part() {
  local device="${GPU_CHECK_DEVICE:-cuda}" d="$dir/duet-runs" t0=$SECONDS rc=0 cmp glibc
  if [ ! -x "$dir/duet" ]; then
    status=1
    note "duet on the GPU: no duet in $dir: NOT run"
    return 0
  fi
  # The bundle's libraries come from Debian 12: its libevent and libstdc++ need glibc 2.36.
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -n "$glibc" ] && [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | head -1)" != 2.36 ]; then
    status=1
    note "duet on the GPU: NOT run: this machine's C library is glibc $glibc; the bundle's Open MPI needs 2.36 or newer"
    return 0
  fi
  echo "gpu-check: duet on the GPU ($device): started (each duet command at most 180 s)"
  rm -rf "$d" && mkdir -p "$d"
  (
    cd "$d"
    bundle_env "$dir"
    local common=(--data.path "$dir/data" --train.steps 16 --train.log_every 4 --train.eval_every 0 --checkpoint.every 4
                  --runtime.trace false)
    # What failed, and the last lines of its log.
    fail() {
      echo "$1"
      [ -z "${2:-}" ] || tail -3 "$2" | sed 's/^/    /'
      exit 1
    }
    duet() { timeout 180 "$dir/duet" "$@"; }
    losses() { LD_LIBRARY_PATH="$outer_ld" compare_losses "$@"; }
    duet train "${common[@]}" --runtime.device cpu --run.name cpu >cpu.log 2>&1 || fail "the CPU run failed" cpu.log
    duet train "${common[@]}" --runtime.device "$device" --train.stop_at 12 --run.name gpu >gpu.log 2>&1 ||
      fail "duet train --runtime.device $device failed (gpu.log)" gpu.log
    cmp=$(losses runs/cpu/metrics.jsonl runs/gpu/metrics.jsonl 1 12 1e-4) || fail "GPU vs CPU: $cmp"
    echo "duet train on the GPU vs the CPU, 12 steps: $cmp"
    # The GPU run's step-12 checkpoint (saved from device memory), resumed on the CPU — from
    # that step, not afresh (which would give the CPU's losses as well).
    duet train "${common[@]}" --runtime.device cpu --run.name gpu >resume.log 2>&1 || fail "resume on the CPU failed" resume.log
    grep -q 'resuming from .*(step 12,' resume.log || fail "the CPU run did not resume from the GPU's step 12" resume.log
    cmp=$(losses runs/cpu/metrics.jsonl runs/gpu/metrics.jsonl 13 16 1e-4) || fail "resumed: $cmp"
    echo "its checkpoint resumed on the CPU, steps 13-16 vs an uninterrupted CPU run: $cmp"
    # And the other way: a CPU run's step-8 checkpoint loaded into device memory.
    duet train "${common[@]}" --runtime.device cpu --train.stop_at 8 --run.name to-gpu >to-gpu.log 2>&1 ||
      fail "the CPU run to hand over failed" to-gpu.log
    duet train "${common[@]}" --runtime.device "$device" --run.name to-gpu >to-gpu-resume.log 2>&1 ||
      fail "resume on the GPU failed" to-gpu-resume.log
    grep -q 'resuming from .*(step 8,' to-gpu-resume.log || fail "the GPU run did not resume from step 8" to-gpu-resume.log
    cmp=$(losses runs/cpu/metrics.jsonl runs/to-gpu/metrics.jsonl 9 16 1e-4) || fail "resumed on the GPU: $cmp"
    echo "a CPU checkpoint resumed on the GPU, steps 9-16 vs the uninterrupted CPU run: $cmp"
    # Managed memory through a non-CUDA-aware Open MPI: if its shared-memory single copy (CMA)
    # fails on it, try once more without, and say so in the summary (docs/gpu.md).
    local pp2=(launch -n 2 "${common[@]}" --parallel.pp 2 --parallel.schedule dualpipe --fault.max_restarts 0
               --runtime.device "$device" --run.name pp2)
    if ! duet "${pp2[@]}" >pp2.log 2>&1; then
      echo "PP 2 DualPipe, 2 ranks on one GPU, failed (pp2.log); again with btl_vader_single_copy_mechanism none:"
      tail -3 pp2.log | sed 's/^/    /'
      rm -rf runs/pp2
      OMPI_MCA_btl_vader_single_copy_mechanism=none duet "${pp2[@]}" >pp2-nocma.log 2>&1 ||
        fail "  failed again (pp2-nocma.log)" pp2-nocma.log
      echo "PP 2 ran only without Open MPI's single-copy (CMA) transfers" >retried
    fi
    cmp=$(losses runs/gpu/metrics.jsonl runs/pp2/metrics.jsonl 1 12 1e-4) || fail "PP 2: $cmp"
    echo "PP 2 DualPipe, 2 ranks on one GPU, vs one process on the GPU: $cmp"
    cmp=$(losses runs/cpu/metrics.jsonl runs/pp2/metrics.jsonl 1 16 1e-4) || fail "PP 2 vs the CPU: $cmp"
    echo "  and vs one process on the CPU: $cmp"
    if [ "$device" = cuda ]; then
      local wide=0
      duet train "${common[@]}" --runtime.device cuda --model.d_model 512 --model.heads 2 --run.name wide \
        >wide.log 2>&1 || wide=$?
      ((wide == 2)) && grep -q 'model.heads' wide.log || fail "a 256-wide head was not refused by name (exit $wide, wide.log)" wide.log
      echo "a 256-wide head refused: $(grep -m1 -o 'model.heads[^.]*' wide.log)"
    fi
  ) >"$d/check.log" 2>&1 || rc=$?
  ((rc == 0)) || status=1
  note "duet on the GPU ($device): $([ $rc = 0 ] && echo passed || echo FAILED)$([ -f "$d/retried" ] && echo " ($(cat "$d/retried"))") in $((SECONDS - t0)) s ($d/check.log)"
  sed 's/^/  /' "$d/check.log"
}

case "$mode" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
