#!/usr/bin/env bash
# Download the wheels the lent GPU machine lacks (it has no network and no package index), for its
# Python, into a git-ignored folder that the device call carries (`carry: [".whl"]`):
#   bash scripts/gpu_wheels.sh                 # Python 3.12, x86-64 manylinux, into .whl/
#   bash scripts/gpu_wheels.sh 3.12 .whl       # PYTHON_VERSION DIR
# The versions are those installed here (so the GPU run tests what CI tests), else the newest.
# scripts/gpu_check.sh installs whatever it finds in .whl/ with `pip install --no-index --no-deps --target`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
DIR=${2:-.whl}
PY=${PYTHON:-python3}
# The history store's packages; their own dependencies (numpy, scipy, typing_extensions) are there.
PACKAGES="sqlalchemy ruptures fastjsonschema"
specs=()
for name in $PACKAGES; do
  if version=$($PY -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null); then
    specs+=("$name==$version")
  else
    specs+=("$name")
  fi
done
mkdir -p "$DIR"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DIR" "${specs[@]}"
ls -l "$DIR"/*.whl
du -sh "$DIR"
