#!/usr/bin/env bash
# Builds a local Debian bookworm + python3 base image without any container registry:
# bootstrap a minimal root filesystem (mmdebstrap, or debootstrap as a fallback) from a Debian mirror,
# then `docker import` it. The Dockerfiles accept it as `--build-arg BASE_IMAGE=plasma/debian-python:bookworm`
# in place of python:3.11-slim-bookworm (bookworm's python3 is 3.11, like the public image).
#
#   scripts/build_base_image.sh [IMAGE]          default plasma/debian-python:bookworm
#   PLASMA_DEBIAN_MIRROR=http://mirror.local/debian  for an air-gapped mirror
#   PLASMA_DEBIAN_SECURITY_MIRROR=...                 its security counterpart ("" to skip security updates)
#   PLASMA_BOOTSTRAP=debootstrap                      use debootstrap even where mmdebstrap is installed
#
# Needs root (debootstrap) or user namespaces (mmdebstrap), and one of the two tools
# (`apt-get install mmdebstrap` or `debootstrap`; installed automatically when running as root on Debian).
set -euo pipefail

IMAGE=${1:-plasma/debian-python:bookworm}
SUITE=bookworm
MIRROR=${PLASMA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${PLASMA_DEBIAN_SECURITY_MIRROR-http://deb.debian.org/debian-security}
# python3, and python3-venv for ensurepip: the images create their venvs with `python3 -m venv`, as on python:slim.
PACKAGES=python3,python3-venv
started=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/plasma-base.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Documentation, man pages and translations are not needed in a container (copyright files are kept).
excludes=('/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*' '/usr/share/lintian/*')

# PLASMA_BOOTSTRAP=mmdebstrap|debootstrap picks the tool; by default mmdebstrap when installed. On a fresh
# Debian/Ubuntu machine (CI) run as root, mmdebstrap is installed with apt-get first (PLASMA_BOOTSTRAP_INSTALL=0
# turns that off).
tool=${PLASMA_BOOTSTRAP:-}
if [ -z "$tool" ] && ! command -v mmdebstrap >/dev/null && ! command -v debootstrap >/dev/null \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${PLASMA_BOOTSTRAP_INSTALL:-1}" != 0 ]; then
  echo "::: base image: installing mmdebstrap (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
if [ -z "$tool" ]; then
  if command -v mmdebstrap >/dev/null; then tool=mmdebstrap
  elif command -v debootstrap >/dev/null; then tool=debootstrap
  else tool=none; fi
fi

sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main")
if [ -n "$SECURITY_MIRROR" ]; then sources+=("deb $SECURITY_MIRROR $SUITE-security main"); fi

if [ "$tool" = mmdebstrap ]; then
  dpkgopts=()
  for path in "${excludes[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=$path"); done
  dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
  echo "::: base image: mmdebstrap --variant=minbase $SUITE + $PACKAGES from $MIRROR"
  # The merged-usr hook sets up the merged /usr itself; otherwise bookworm pulls in usrmerge and, with it, perl.
  hooks=()
  if [ -d /usr/share/mmdebstrap/hooks/merged-usr ]; then hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr); fi
  mmdebstrap --variant=minbase --include="$PACKAGES" "${hooks[@]}" "${dpkgopts[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    "$SUITE" "$work/rootfs.tar" "${sources[@]}" > "$work/mmdebstrap.log" 2>&1 \
    || { tail -n 40 "$work/mmdebstrap.log" >&2; exit 1; }
  tarball="$work/rootfs.tar"
elif [ "$tool" = debootstrap ]; then
  if [ "$(id -u)" != 0 ]; then echo "debootstrap needs root (or install mmdebstrap)" >&2; exit 1; fi
  echo "::: base image: debootstrap --variant=minbase $SUITE + $PACKAGES from $MIRROR"
  root="$work/rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
  # The same exclusions as mmdebstrap's, kept for packages installed later; then security updates.
  { printf 'path-exclude=%s\n' "${excludes[@]}"; echo 'path-include=/usr/share/doc/*/copyright'; } \
    > "$root/etc/dpkg/dpkg.cfg.d/90plasma-excludes"
  printf '%s\n' "${sources[@]}" > "$root/etc/apt/sources.list"
  chroot "$root" apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq > "$work/upgrade.log" 2>&1 \
    || { tail -n 40 "$work/upgrade.log" >&2; exit 1; }
  chroot "$root" apt-get clean
  # What debootstrap unpacked before the exclusions existed.
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian/*
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*
  tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
  tarball="$work/rootfs.tar"
else
  echo "neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap" >&2
  exit 1
fi

echo "::: base image: docker import as $IMAGE"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "Debian $SUITE minbase + $PACKAGES (scripts/build_base_image.sh)" \
  "$tarball" "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" python3 -c 'import sys; print("python", sys.version.split()[0], sys.executable)'
echo "::: base image: $IMAGE $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')" \
     "built in $((SECONDS - started)) s"
