#!/usr/bin/env bash
# Host-side wheelhouse for the container images: deploy/build_images.sh serves it over HTTP to the builds, which
# install from it with `pip install --no-index --find-links`, so nothing is downloaded inside a `docker build`.
#
#   scripts/wheelhouse.sh      the dependency sets (slow the first time: torch is several GB)
#
# Layout (one directory per install set):
#   wheelhouse/services/  requirements.in + every wheel the simulator/trainer/compiler need
#   wheelhouse/edge/      requirements.in + the few wheels the edge runtime needs (onnxruntime, numpy, grpcio)
#   wheelhouse/build/     setuptools and wheel, to build the project inside the images without the network
#
# Wheels are chosen for the image's Python and platform (PLASMA_IMAGE_PYTHON, default 3.11, and
# manylinux up to glibc 2.36 = Debian bookworm), not the host's, so any host with Python >= 3.11 and pip works.
# A second run reuses what is there and goes offline when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${WHEELHOUSE:-wheelhouse}
IMAGE_PYTHON=${PLASMA_IMAGE_PYTHON:-3.11}
ARCH=${PLASMA_IMAGE_ARCH:-$(uname -m)}
GLIBC_MINOR=${PLASMA_IMAGE_GLIBC_MINOR:-36}

step() {
  local name=$1; shift
  local started=$SECONDS
  echo "::: wheelhouse: ${name}"
  "$@"
  echo "::: wheelhouse: ${name} took $((SECONDS - started)) s"
}

# Every manylinux tag a bookworm image can run, newest first.
target_flags=(--only-binary=:all: --implementation cp --python-version "$IMAGE_PYTHON"
              --abi "cp${IMAGE_PYTHON/./}")
for ((minor = GLIBC_MINOR; minor >= 5; minor--)); do target_flags+=(--platform "manylinux_2_${minor}_${ARCH}"); done
target_flags+=(--platform "manylinux2014_${ARCH}" --platform "manylinux2010_${ARCH}" --platform "manylinux1_${ARCH}")

# requirements.in per set, straight from pyproject.toml (scripts/requirements.py, which the image builds run too).
write_requirements() {
  local extra=$1 dest=$2
  mkdir -p "$dest"
  "$PYTHON" scripts/requirements.py "$extra" > "$dest/requirements.in.new"
  # Only replace the file when it changed, so that make's timestamps stay meaningful.
  if cmp -s "$dest/requirements.in.new" "$dest/requirements.in"; then rm "$dest/requirements.in.new"
  else mv "$dest/requirements.in.new" "$dest/requirements.in"; fi
}

download_set() {
  local dest=$1
  if "$PYTHON" -m pip download --quiet --no-index --find-links "$dest" "${target_flags[@]}" \
       -d "$dest" -r "$dest/requirements.in" >/dev/null 2>&1; then
    echo "all wheels already in $dest (offline)"
  else
    "$PYTHON" -m pip download --progress-bar off "${target_flags[@]}" -d "$dest" -r "$dest/requirements.in"
  fi
  echo "$dest: $(find "$dest" -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1)"
}

deps() {
  write_requirements services "$OUT/services"
  write_requirements edge "$OUT/edge"
  step "services set (torch, peft, onnx, gymnasium, ...)" download_set "$OUT/services"
  step "edge set (onnxruntime, numpy, grpcio)" download_set "$OUT/edge"
  mkdir -p "$OUT/build"
  step "build backend (setuptools, wheel)" bash -c \
    "'$PYTHON' -m pip download --quiet --no-index --find-links '$OUT/build' -d '$OUT/build' 'setuptools>=77' wheel \
       >/dev/null 2>&1 || '$PYTHON' -m pip download --quiet -d '$OUT/build' 'setuptools>=77' wheel"
}

case "${1:-deps}" in
  deps) deps ;;
  *) echo "usage: $0 [deps]" >&2; exit 2 ;;
esac
