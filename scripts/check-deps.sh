#!/usr/bin/env bash
# Fails when a module includes a header of a module it may not use (docs/architecture.md).
# The link catches most of these too; this names the offending file and line.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"
declare -A allowed=(
  [core]="core"
  [kernels]="kernels"
  [model]="model kernels"
  [scheduler]="scheduler core"
  [checkpoint]="checkpoint core"
  [io]="io core"
  [report]="report core scheduler"
  [slurm]="slurm"
  [supervisor]="supervisor core io checkpoint slurm"
  [runtime]="runtime model kernels scheduler checkpoint io core"
  [apps]="apps runtime model kernels scheduler checkpoint io report slurm supervisor core"
)
modules="core kernels model scheduler checkpoint io report runtime slurm supervisor apps"
bad=0
for mod in "${!allowed[@]}"; do
  [ -d "$mod" ] || continue
  while IFS=: read -r file line text; do
    inc=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$text")
    case " $modules " in *" $inc "*) ;; *) continue ;; esac
    case " ${allowed[$mod]} " in
      *" $inc "*) ;;
      *) echo "$file:$line: $mod/ may not include $inc/ (allowed: ${allowed[$mod]})"; bad=1 ;;
    esac
  done < <(grep -rnE '^\s*#\s*include "[a-z_]+/' "$mod" --include='*.h' --include='*.cpp' --include='*.cu' || true)
done
[ $bad -eq 0 ] && echo "module dependencies OK"
exit $bad
