#!/usr/bin/env bash
# One-time set-up for `snakemake --profile slurm`: link this checkout's profiles/slurm into the folder where
# Snakemake looks for named profiles (its user config folder: $XDG_CONFIG_HOME/snakemake, by default
# ~/.config/snakemake on Linux, as Snakemake's own get_appdirs() says). A link, not a copy: edits to
# profiles/slurm/ apply at once. Idempotent: a link to this checkout is kept; anything else of that name is
# left alone unless --force replaces a link (a real folder is never touched).
#
#   bash profiles/install.sh            # link ~/.config/snakemake/slurm -> <checkout>/profiles/slurm
#   bash profiles/install.sh --force    # replace a link of that name pointing elsewhere
#   PYTHON=/path/to/python bash profiles/install.sh   # the Python that runs Snakemake (default .venv's)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-$here/../.venv/bin/python}
folder=""
if [ -x "$python" ] || command -v "$python" >/dev/null 2>&1; then
  folder=$("$python" -c 'from snakemake.common import get_appdirs; print(get_appdirs().user_config_dir)' 2>/dev/null) || folder=""
fi
if [ -z "$folder" ]; then  # no Snakemake to ask: platformdirs' rule on Linux
  folder=${XDG_CONFIG_HOME:-$HOME/.config}/snakemake
fi

source=$here/slurm
target=$folder/slurm
mkdir -p "$folder"
if [ -L "$target" ]; then
  current=$(readlink "$target")
  if [ "$(cd "$target" 2>/dev/null && pwd -P)" = "$source" ]; then
    echo "already linked: $target -> $current"
    exit 0
  fi
  if [ "$force" = 0 ]; then
    echo "$target already links to $current; rerun with --force to point it at $source" >&2
    exit 1
  fi
  rm "$target"
elif [ -e "$target" ]; then
  echo "$target exists and is not a link (another profile named slurm?); move it away, or use" \
       "--profile $source instead" >&2
  exit 1
fi
ln -s "$source" "$target"
echo "linked $target -> $source"
echo "now, from the repository root: snakemake --profile slurm"
