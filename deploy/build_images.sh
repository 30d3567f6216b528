#!/usr/bin/env bash
# Builds the Plasma images with deploy/docker-compose.yml's own build sections, offline: the packages come from the
# host-side wheelhouse (scripts/wheelhouse.sh), served over HTTP to the builds on the Docker bridge only for the
# duration of this script. `make images` runs it; a plain `docker compose up` builds the same Dockerfiles from
# PyPI instead (docs/containers.md).
#
#   plasma/{simulator,trainer,compiler}:$PLASMA_TAG   one shared `dependencies` stage (Python, torch, ...) + the project
#   plasma/edge:$PLASMA_TAG      the edge runtime only (onnxruntime, numpy, grpcio): no torch, no build tools
#   plasma/registry:$PLASMA_TAG  the packet registry on the edge's dependencies (target `registry` of its Dockerfile)
#
# Base image (BASE_IMAGE of the Dockerfiles), first match wins:
#   1. PLASMA_BASE_IMAGE, if set (pulled or built locally when missing)
#   2. the public python:3.11-slim-bookworm, if already present
#   3. the local plasma/debian-python:bookworm, if already present (the offline path, built earlier)
#   4. the public image, if `docker pull` succeeds within PLASMA_PULL_TIMEOUT seconds (default 30)
#   5. otherwise the local image, built now by scripts/build_base_image.sh (no registry needed)
# The build cache keeps the dependency layers while pyproject.toml's dependency lists and the base stay the same,
# so a code change rebuilds only the small project layers.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${PLASMA_TAG:-latest}
PUBLIC_BASE=${PLASMA_PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=${PLASMA_LOCAL_BASE_IMAGE:-plasma/debian-python:bookworm}
PULL_TIMEOUT=${PLASMA_PULL_TIMEOUT:-30}
WHEELHOUSE=${WHEELHOUSE:-wheelhouse}
# The classic builder needs no registry, no buildx and no `# syntax=` image; DOCKER_BUILDKIT=1 opts into BuildKit.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
# Where the builds fetch the wheelhouse: the Docker bridge's gateway, which the build containers reach and
# nothing outside this machine does. A fixed port keeps the build arguments, hence the build cache, stable.
WHEELHOUSE_PORT=${PLASMA_WHEELHOUSE_PORT:-38080}

step() {
  local name=$1; shift
  local started=$SECONDS
  echo "::: images: ${name}"
  "$@"
  echo "::: images: ${name} took $((SECONDS - started)) s"
}

present() { docker image inspect "$1" >/dev/null 2>&1; }
pull() { timeout "$PULL_TIMEOUT" docker pull --quiet "$1" >/dev/null 2>&1; }
# A local base made before python3-venv was in it cannot create the images' venvs: it is rebuilt.
has_venv() { docker run --rm --network none --entrypoint python3 "$1" -c 'import ensurepip' >/dev/null 2>&1; }

choose_base() {
  if [ -n "${PLASMA_BASE_IMAGE:-}" ]; then
    base=$PLASMA_BASE_IMAGE
    if ! present "$base"; then
      if [ "$base" = "$LOCAL_BASE" ]; then scripts/build_base_image.sh "$base"
      elif ! pull "$base"; then echo "base image $base is not present and cannot be pulled" >&2; exit 1; fi
    fi
  elif present "$PUBLIC_BASE"; then base=$PUBLIC_BASE
  elif present "$LOCAL_BASE" && has_venv "$LOCAL_BASE"; then base=$LOCAL_BASE
  elif pull "$PUBLIC_BASE"; then base=$PUBLIC_BASE
  else
    echo "::: images: $PUBLIC_BASE cannot be pulled (no registry?): building $LOCAL_BASE from Debian packages"
    scripts/build_base_image.sh "$LOCAL_BASE"
    base=$LOCAL_BASE
  fi
  echo "::: images: base image $base ($(docker image inspect -f '{{.Id}}' "$base" | cut -c8-19))"
}

for required in "$WHEELHOUSE/services/requirements.in" "$WHEELHOUSE/edge/requirements.in"; do
  if [ ! -f "$required" ] || [ -z "$(ls "$WHEELHOUSE"/build/setuptools-*.whl 2>/dev/null)" ]; then
    echo "wheelhouse incomplete ($required or the build backend missing): run scripts/wheelhouse.sh" >&2
    exit 1
  fi
done

started=$SECONDS
choose_base

# The bridge's gateway as a build container sees it (its default route): `docker network inspect` leaves the
# Gateway field empty on some engines.
gateway=$(docker run --rm --entrypoint python3 "$base" -c '
with open("/proc/net/route") as routes:
    for line in list(routes)[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            print(".".join(str(int(fields[2][i:i + 2], 16)) for i in (6, 4, 2, 0)))')
if [ -z "$gateway" ]; then echo "cannot find the Docker bridge's gateway address" >&2; exit 1; fi
python3 -m http.server --bind "$gateway" "$WHEELHOUSE_PORT" --directory "$WHEELHOUSE" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://$gateway:$WHEELHOUSE_PORT/', timeout=1)" \
       2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "cannot serve the wheelhouse on $gateway:$WHEELHOUSE_PORT (in use? set PLASMA_WHEELHOUSE_PORT)" >&2; exit 1
  fi
  sleep 0.2
done
# Every build argument the compose file passes, set here, so that the cache stages below are built with the
# very same arguments (the build cache is keyed on them).
export PLASMA_BASE_IMAGE=$base PLASMA_WHEELHOUSE_URL="http://$gateway:$WHEELHOUSE_PORT" \
  PLASMA_PIP_INDEX_URL=${PLASMA_PIP_INDEX_URL:-https://pypi.org/simple} \
  PLASMA_PIP_EXTRA_INDEX_URL=${PLASMA_PIP_EXTRA_INDEX_URL-https://download.pytorch.org/whl/cpu}
echo "::: images: wheelhouse served to the builds at $PLASMA_WHEELHOUSE_URL"

# One service at a time, so that each step's time is its own; the later ones reuse the shared stages' cache.
# Compose's build output is long: kept in a log, shown when a build fails.
log=$(mktemp "${TMPDIR:-/tmp}/plasma-images.XXXXXX")
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
compose_build() {
  if ! deploy/compose.sh build "$1" > "$log" 2>&1; then tail -n 60 "$log" >&2; exit 1; fi
}
for service in simulator trainer compiler edge registry; do
  step "plasma/$service:$TAG" compose_build "$service"
done

# The stages no image is built on (the edge's builder, the services' project) are tagged, so that the prune below
# keeps them as the cache of the next build: from the build cache, these take seconds.
keep_stage() {
  docker build --quiet -f "$1" --target "$2" --build-arg "BASE_IMAGE=$PLASMA_BASE_IMAGE" \
    --build-arg "PLASMA_WHEELHOUSE_URL=$PLASMA_WHEELHOUSE_URL" --build-arg "PLASMA_PIP_INDEX_URL=$PLASMA_PIP_INDEX_URL" \
    --build-arg "PLASMA_PIP_EXTRA_INDEX_URL=$PLASMA_PIP_EXTRA_INDEX_URL" -t "plasma/build-cache:$3" . > "$log" 2>&1 \
    || { tail -n 60 "$log" >&2; exit 1; }
}
cache_stages() { keep_stage deploy/edge/Dockerfile builder edge && keep_stage deploy/services/Dockerfile project services; }
step "build cache stages" cache_stages

# Superseded images and build stages of our own (by label) would keep gigabytes of layers alive.
docker image prune --force --filter label=org.plasma.project=plasma >/dev/null

echo "::: images: built in $((SECONDS - started)) s on base $base"
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
for image in "plasma/simulator:$TAG" "plasma/trainer:$TAG" "plasma/compiler:$TAG" "plasma/edge:$TAG" \
  "plasma/registry:$TAG"; do
  printf '  %-28s %s\n' "$image" "$(size "$image")"
done
echo "  (the three service images share their dependency layers, stored once; so do the edge and the registry)"
