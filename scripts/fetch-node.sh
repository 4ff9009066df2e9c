#!/usr/bin/env bash
# Prints the path of a Node.js binary of the given major version (and arch: x64 or arm64),
# fetched once from the npm registry (the `node-linux-<arch>` packages carry the official
# binaries) into a cache directory. Used to test the package on Node 22 and 24 and on arm64.
#   scripts/fetch-node.sh 22          → /var/cache/memory-server/node/v22.x.y-linux-x64/bin/node
set -euo pipefail
major=${1:?usage: fetch-node.sh MAJOR [x64|arm64]}
arch=${2:-x64}
cache=${MEMORY_SERVER_NODE_CACHE:-/var/cache/memory-server/node}
mkdir -p "$cache"
version=$(npm view "node-linux-$arch@$major" version --registry "${NPM_REGISTRY:-https://registry.npmjs.org}" 2>/dev/null | tail -1 | sed -E "s/.*'([^']+)'.*/\1/")
[ -n "$version" ] || { echo "fetch-node.sh: no node-linux-$arch@$major on the npm registry" >&2; exit 1; }
dir="$cache/v$version-linux-$arch"
if [ ! -x "$dir/bin/node" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "node-linux-$arch@$version" --silent --registry "${NPM_REGISTRY:-https://registry.npmjs.org}" >/dev/null)
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -a "$tmp/package/." "$dir/"
  [ -x "$dir/bin/node" ] || { echo "fetch-node.sh: node-linux-$arch@$version has no bin/node" >&2; exit 1; }
fi
echo "$dir/bin/node"
