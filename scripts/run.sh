#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the default job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/apps/duet launch "$@"
