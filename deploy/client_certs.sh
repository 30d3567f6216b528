#!/usr/bin/env bash
# Copies a client identity of the compose stack out of its volumes, for the SDK and CLI on the host
# (the one-shot `certs` service made it; docs/security.md):
#
#   deploy/client_certs.sh [ROLE] [DIR]   ROLE operator (default) or reader; DIR default var/compose-certs/ROLE
#
# Writes DIR/ca.pem, DIR/client.pem and DIR/client-key.pem (DIR and the key private to you), then prints the
# settings that use them, ready for `eval "$(deploy/client_certs.sh)"`. The project is COMPOSE_PROJECT_NAME
# (default "plasma"), the image that reads the volumes plasma/edge:PLASMA_TAG.
set -euo pipefail

role=${1:-operator}
case "$role" in
  operator | reader) ;;
  *) echo "role must be operator or reader, not '$role'" >&2; exit 2 ;;
esac
dir=${2:-var/compose-certs/$role}
project=${COMPOSE_PROJECT_NAME:-plasma}
image=plasma/edge:${PLASMA_TAG:-latest}

# `docker run -v` would create a missing volume, empty and unlabelled: check first.
for volume in "${project}_tls-ca" "${project}_tls-$role"; do
  if ! docker volume inspect "$volume" >/dev/null 2>&1; then
    echo "no volume $volume: start the stack first (make up), with COMPOSE_PROJECT_NAME=$project" >&2
    exit 1
  fi
done

copy() {  # volume, file in it, destination
  docker run --rm --network none --entrypoint cat --volume "$1:/in:ro" "$image" "/in/$2" > "$3.tmp"
  mv "$3.tmp" "$3"
}
umask 077
mkdir -p "$dir"
copy "${project}_tls-ca" ca.pem "$dir/ca.pem"
copy "${project}_tls-$role" client.pem "$dir/client.pem"
copy "${project}_tls-$role" client-key.pem "$dir/client-key.pem"
echo "copied the $role client certificate of project $project to $dir" >&2
dir=$(cd "$dir" && pwd)
echo "export PLASMA_TLS_CA=$dir/ca.pem PLASMA_TLS_CERT=$dir/client.pem PLASMA_TLS_KEY=$dir/client-key.pem"
