#!/usr/bin/env bash
# Builds the Plasma images from the host-side wheelhouse (scripts/wheelhouse.sh); `make images` runs it.
#
#   plasma/service-base:<hash>   Python + every service dependency (torch, ...): one layer shared by the three below
#   plasma/{simulator,trainer,compiler}:$PLASMA_TAG   the project on top of that base
#   plasma/edge:$PLASMA_TAG      the edge runtime only (onnxruntime, numpy, grpcio): no torch, no build tools
#
# Base image (BASE_IMAGE of the Dockerfiles), first match wins:
#   1. PLASMA_BASE_IMAGE, if set (pulled or built locally when missing)
#   2. the public python:3.11-slim-bookworm, if already present
#   3. the local plasma/debian-python:bookworm, if already present (the offline path, built earlier)
#   4. the public image, if `docker pull` succeeds within PLASMA_PULL_TIMEOUT seconds (default 30)
#   5. otherwise the local image, built now by scripts/build_base_image.sh (no registry needed)
# The service base is tagged with a hash of its inputs (Dockerfile, requirements, wheel names, base image id)
# and is not rebuilt while that tag exists, so re-runs cost seconds, not a 2.8 GB build context.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${PLASMA_TAG:-latest}
PUBLIC_BASE=${PLASMA_PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=${PLASMA_LOCAL_BASE_IMAGE:-plasma/debian-python:bookworm}
PULL_TIMEOUT=${PLASMA_PULL_TIMEOUT:-30}
WHEELHOUSE=${WHEELHOUSE:-wheelhouse}
# The classic builder needs no registry, no buildx and no `# syntax=` image; DOCKER_BUILDKIT=1 opts into BuildKit.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
# The classic builder's deprecation notice is noise here: the choice is deliberate (see above).
build() {
  docker build --quiet --force-rm "$@" 2> >(grep -v -e '^DEPRECATED: The legacy builder' \
    -e '^ *BuildKit is currently disabled' -e '^ *environment-variable\.$' -e '^$' >&2)
}

step() {
  local name=$1; shift
  local started=$SECONDS
  echo "::: images: ${name}"
  "$@"
  echo "::: images: ${name} took $((SECONDS - started)) s"
}

present() { docker image inspect "$1" >/dev/null 2>&1; }
pull() { timeout "$PULL_TIMEOUT" docker pull --quiet "$1" >/dev/null 2>&1; }

choose_base() {
  if [ -n "${PLASMA_BASE_IMAGE:-}" ]; then
    base=$PLASMA_BASE_IMAGE
    if ! present "$base"; then
      if [ "$base" = "$LOCAL_BASE" ]; then scripts/build_base_image.sh "$base"
      elif ! pull "$base"; then echo "base image $base is not present and cannot be pulled" >&2; exit 1; fi
    fi
  elif present "$PUBLIC_BASE"; then base=$PUBLIC_BASE
  elif present "$LOCAL_BASE"; then base=$LOCAL_BASE
  elif pull "$PUBLIC_BASE"; then base=$PUBLIC_BASE
  else
    echo "::: images: $PUBLIC_BASE cannot be pulled (no registry?): building $LOCAL_BASE from Debian packages"
    scripts/build_base_image.sh "$LOCAL_BASE"
    base=$LOCAL_BASE
  fi
  echo "::: images: base image $base ($(docker image inspect -f '{{.Id}}' "$base" | cut -c8-19))"
}

for required in "$WHEELHOUSE/services/requirements.in" "$WHEELHOUSE/edge/requirements.in"; do
  if [ ! -f "$required" ] || [ -z "$(ls "$WHEELHOUSE"/project/plasma-*.whl 2>/dev/null)" ]; then
    echo "wheelhouse incomplete ($required or the project wheel missing): run scripts/wheelhouse.sh" >&2
    exit 1
  fi
done

started=$SECONDS
choose_base
base_id=$(docker image inspect -f '{{.Id}}' "$base")

inputs_hash=$( { cat deploy/base/Dockerfile "$WHEELHOUSE/services/requirements.in"
                 (cd "$WHEELHOUSE/services" && ls -l --time-style=+ -- *.whl | awk '{print $5, $NF}')
                 echo "$base_id"; } | sha256sum | cut -c1-12)
service_base=plasma/service-base:$inputs_hash
if present "$service_base"; then
  echo "::: images: $service_base is up to date (inputs unchanged)"
else
  step "service base $service_base (Python + torch and the other service dependencies)" \
    build -f deploy/base/Dockerfile --build-arg "BASE_IMAGE=$base" -t "$service_base" "$WHEELHOUSE/services"
  # The builder stage (wheels + a second copy of the venv, ~8 GB) is only a cache for this exact base: drop it.
  docker image prune --force --filter label=org.plasma.stage=service-base-builder >/dev/null
fi
docker tag "$service_base" "plasma/service-base:$TAG"

# Builder stages are tagged so that they stay as the cache of the next build while the prune below removes
# everything superseded (untagged images with the project's label).
step "build cache for the service images" build -f deploy/services/Dockerfile --target builder \
  --build-arg "SERVICE_BASE=$service_base" -t plasma/build-cache:services .
for service in simulator trainer compiler; do
  step "plasma/$service:$TAG" build -f deploy/services/Dockerfile --target "$service" \
    --build-arg "SERVICE_BASE=$service_base" -t "plasma/$service:$TAG" .
done
step "build cache for the edge image" build -f deploy/edge/Dockerfile --target builder \
  --build-arg "BASE_IMAGE=$base" -t plasma/build-cache:edge .
step "plasma/edge:$TAG" build -f deploy/edge/Dockerfile --build-arg "BASE_IMAGE=$base" \
  -t "plasma/edge:$TAG" .

# Superseded service bases and the images built on them would keep gigabytes of layers alive.
for old in $(docker image ls plasma/service-base --format '{{.Tag}}'); do
  if [ "$old" != "$inputs_hash" ] && [ "$old" != "$TAG" ]; then docker rmi "plasma/service-base:$old" >/dev/null || true; fi
done
docker image prune --force --filter label=org.plasma.project=plasma >/dev/null

echo "::: images: built in $((SECONDS - started)) s on base $base"
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
for image in "plasma/service-base:$TAG" "plasma/simulator:$TAG" "plasma/trainer:$TAG" "plasma/compiler:$TAG" \
             "plasma/edge:$TAG"; do
  printf '  %-28s %s\n' "$image" "$(size "$image")"
done
echo "  (the three service images share plasma/service-base's layers: stored once)"
