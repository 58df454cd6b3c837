#!/usr/bin/env bash
# Installs the Debian 12 packages duet needs; skips what is already present (idempotent).
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config git
  openmpi-bin libopenmpi-dev            # MPI control plane
  libhdf5-openmpi-dev hdf5-tools        # checkpoints (parallel flavour) + h5ls/h5dump
  libyaml-cpp-dev                       # configs
  libboost-program-options-dev          # the duet command line
  libboost-context-dev                  # tests: fibers that run the CUDA kernels' threads on the host
  libdnnl-dev                           # CPU GEMM (oneDNN sgemm)
  libopenblas-dev                       # only bench_gemm's comparison with oneDNN
  libgtest-dev googletest libbenchmark-dev
  fortunes fortunes-min                 # training text (byte-level tokens)
  chromium                              # renders report.html in tests (headless screenshot)
  slurmctld slurmd slurm-client munge   # the `slurm` tests' local cluster (scripts/slurm-cluster.sh)
  libpmix-dev                           # srun --mpi=pmix starts Open MPI ranks under Slurm
  procps                                # ps: scripts/slurm-cluster.sh finds a crashed node's tasks
  python3                               # tests: the GPU speed summary, scripts/check-pipes.py
  xz-utils                              # tests: the GPU check's bundle (scripts/gpu-check.sh pack)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The Slurm packages try to start their daemons (invoke-rc.d); without an init system that is
# refused, which is fine: scripts/slurm-cluster.sh starts private ones.
# A package's maintainer script can make apt-get exit non-zero although everything was
# installed (seen once on a fresh machine, not reproduced), so the answer is what dpkg says
# afterwards: every package present, or the missing ones named.
rc=0
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
still=()
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || still+=("$p")
done
if [ ${#still[@]} -gt 0 ]; then
  echo "install-deps: apt-get exited with $rc; still missing: ${still[*]}" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || echo "install-deps: apt-get exited with $rc, but every package is installed; going on" >&2
