#!/usr/bin/env bash
# One command for an air-gapped site: builds the appliance image from a wheelhouse and puts
# everything the site needs in one folder (deploy/README.md, "Offline install"):
#   wbspine-node-<version>[-gpu].tar   image archive (podman load -i / docker load -i)
#   wheelhouse/                        every wheel, for the install without containers
#   bundle/default/                    the model bundle, when the repository has one
#   compose.yaml node.example.toml wbspine-node.service README.md SHA256SUMS
# Usage: deploy/offline.sh [OUT_DIR]          (default: build/offline)
# Environment: VARIANT=cpu|gpu, BASE_IMAGE=..., TAG=..., ENGINE=podman|docker,
#   PIP_CA=/path/ca.pem (CA of an intercepting proxy, given to the build as a secret),
#   BUILD_ARGS="..." (extra build options, e.g. --pull=never --network=none), PYTHON=...
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/build/offline}" && cd "${1:-$repo/build/offline}" && pwd)
variant=${VARIANT:-cpu}
engine=${ENGINE:-podman}
python=${PYTHON:-$([ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)
suffix=$([ "$variant" = gpu ] && echo "-gpu" || true)
tag=${TAG:-wbspine-node:$version$suffix}
archive="$out/wbspine-node-$version$suffix.tar"
cd "$repo"

step() { printf '[offline %5ss] %s\n' "$SECONDS" "$*"; }

step "wheelhouse ($variant)"
rm -f deploy/wheelhouse/*.whl
target=$([ "$variant" = gpu ] && echo "$repo[gpu]" || echo "$repo")
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir deploy/wheelhouse \
  "$target" "setuptools>=68" wheel 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

step "image $tag"
args=(build -f deploy/Containerfile -t "$tag" --build-arg "VARIANT=$variant")
[ "$engine" = podman ] && args+=(--format docker)   # keep HEALTHCHECK
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${PIP_CA:-}" ] && args+=(--secret "id=cacert,src=$PIP_CA")
# shellcheck disable=SC2206
[ -n "${BUILD_ARGS:-}" ] && args+=($BUILD_ARGS)
"$engine" "${args[@]}" .
[ "$engine" = podman ] && podman image prune --force >/dev/null || true   # drop the build stage

step "archive $archive"
rm -f "$archive"
if [ "$engine" = podman ]; then podman save --format docker-archive -o "$archive" "$tag"
else docker save -o "$archive" "$tag"; fi

step "wheelhouse, bundle and deployment files"
rm -rf "$out/wheelhouse" "$out/bundle"
cp -r deploy/wheelhouse "$out/wheelhouse"
if [ -f appliance/models/default/manifest.json ]; then
  mkdir -p "$out/bundle" && cp -r appliance/models/default "$out/bundle/default"
fi
cp deploy/compose.yaml deploy/node.example.toml deploy/wbspine-node.service deploy/README.md "$out/"
(cd "$out" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
step "done: $out ($(du -sh "$out" | cut -f1)); image $tag, $(du -m "$archive" | cut -f1) MB archive"
