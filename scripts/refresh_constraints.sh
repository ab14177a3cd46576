#!/usr/bin/env bash
# Refresh constraints.txt: resolve lift3d's dependencies afresh in a clean virtual environment
# and pin every package to the version it got. Run it when you change pyproject.toml's
# dependencies or want newer releases; commit the new constraints.txt with the change.
#   bash scripts/refresh_constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch==2.13.0   # the CPU build on this machine's disk
"$venv/bin/python" -m pip install --quiet -e ".[dev]"
{
  echo "# Exact versions of every dependency, for reproducible installs and figures."
  echo "# Used as: pip install -c constraints.txt -e \".[dev]\"   (after pip install torch==2.13.0)"
  echo "# Refresh with: bash scripts/refresh_constraints.sh"
  # local build tags (2.13.0+cpu) are dropped: ==2.13.0 admits the CPU build and never asks for more
  "$venv/bin/python" -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
rm -rf "$(dirname "$venv")"
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
