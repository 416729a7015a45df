#!/usr/bin/env bash
# Refresh the lock files requirements/cpu.txt and requirements/cuda.txt from
# pyproject.toml (and the PyTorch pin in requirements/pins.txt) with uv, every file's
# sha256 included, so that `pip install --require-hashes` installs exactly the set
# the results were produced with. docs/running.md: "Pinned environment".
#
#   scripts/lock.sh                                    # Python 3.11, Linux x86_64 (the A40 nodes)
#   LOCK_PYTHON=3.12 scripts/lock.sh                   # another cluster Python
#   LOCK_PLATFORM=aarch64-manylinux_2_28 scripts/lock.sh
#
# Needs uv (pip install uv) and access to PyPI; it downloads metadata, not wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${LOCK_PYTHON:-3.11}
platform=${LOCK_PLATFORM:-x86_64-manylinux_2_28}
uv=${UV:-$(command -v uv || echo "python3 -m uv")}
common=(--generate-hashes --python-version "$python" --python-platform "$platform"
        --constraint requirements/pins.txt --custom-compile-command scripts/lock.sh --quiet)
for target in cpu cuda; do
  extras=(--extra test)
  [ "$target" = cuda ] && extras+=(--extra cuda)
  out=requirements/$target.txt
  tmp=$(mktemp "requirements/.$target.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  $uv pip compile pyproject.toml "${extras[@]}" "${common[@]}" -o "$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$out"
  trap - EXIT
  echo "$out: $(grep -c '^[a-z0-9].*==' "$out") packages, $(wc -c < "$out") bytes"
done
