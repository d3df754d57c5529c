#!/usr/bin/env bash
# Stand-in for the Containerfile's base image on machines that cannot pull images (CI, the
# development machines): a Debian bookworm root file system with Python 3.11 (as in
# python:3.11-slim), imported under the name the Containerfile's FROM uses. Sites never run
# this; they pull the real base or load the offline image tarball.
# Usage: deploy/local-base.sh [IMAGE_NAME]   (needs root, mmdebstrap and podman)
set -euo pipefail
name=${1:-docker.io/library/python:3.11-slim}
if podman image exists "$name"; then
  echo "local-base: $name already present"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv,passwd \
  bookworm "$work/base.tar"
podman import --quiet "$work/base.tar" "$name" >/dev/null
echo "local-base: imported $name ($(du -m "$work/base.tar" | cut -f1) MB root file system)"
