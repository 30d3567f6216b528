#!/usr/bin/env bash
# Runs deploy/docker-compose.yml with whichever Compose this machine has: the v2 plugin (`docker compose`)
# or the v1 standalone `docker-compose` (Debian bookworm ships 1.29). PLASMA_COMPOSE overrides the choice.
#
#   deploy/compose.sh variant            print the Compose in use, e.g. "docker compose (v2.29.1)"
#   deploy/compose.sh up-wait [SECONDS [SERVICE...]]  start detached (every service, or those named and what they
#                                        depend on) and wait until they are healthy (default 600 s)
#   deploy/compose.sh ARGS...            any other compose command, e.g. `down -v`, `ps`, `logs edge`
#
# The project name is COMPOSE_PROJECT_NAME (default "plasma"); ports and image tag come from the environment
# (see the top of docker-compose.yml). PLASMA_CLUSTER=1 adds docker-compose.cluster.yml: a Ray head and two Ray
# workers that run the simulator's batches (docs/scaling.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
files=(-f "$here/docker-compose.yml")
if [ "${PLASMA_CLUSTER:-0}" = 1 ]; then files+=(-f "$here/docker-compose.cluster.yml"); fi
project=${COMPOSE_PROJECT_NAME:-plasma}

if [ -n "${PLASMA_COMPOSE:-}" ]; then
  read -r -a compose <<< "$PLASMA_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed" >&2
  exit 1
fi
version=$("${compose[@]}" version --short 2>/dev/null || true)
run() { "${compose[@]}" "${files[@]}" -p "$project" "$@"; }

# v1 has no `up --wait`: poll until every container is running and healthy (or has no healthcheck), one-shot
# containers (keys) having exited 0; fail as soon as one exits non-zero or turns unhealthy.
wait_healthy() {
  local timeout=$1 deadline=$((SECONDS + $1)) ids states
  while :; do
    ids=$(run ps -q)
    if [ -z "$ids" ]; then echo "no containers in project $project" >&2; return 1; fi
    # shellcheck disable=SC2086
    states=$(docker inspect -f '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
    if ! grep -qvE ' running 0 (healthy|none)$| exited 0 none$' <<< "$states"; then return 0; fi
    if grep -qE ' (exited|dead) [1-9][0-9]* | unhealthy$' <<< "$states"; then
      echo "a service failed:" >&2; echo "$states" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "not healthy after ${timeout} s:" >&2; echo "$states" >&2; return 1
    fi
    sleep 1
  done
}

case "${1:-}" in
  variant)
    echo "${compose[*]} (${version:-unknown version})"
    ;;
  up-wait)
    timeout=${2:-600}
    services=("${@:3}")
    started=$SECONDS
    if [ "${compose[*]}" = "docker compose" ]; then
      run up --detach --wait --wait-timeout "$timeout" "${services[@]}"
    else
      run up --detach "${services[@]}"
      wait_healthy "$timeout"
    fi
    echo "::: compose: project $project healthy $((SECONDS - started)) s after 'up' (${compose[*]} ${version})"
    ;;
  *)
    run "$@"
    ;;
esac
