#!/usr/bin/env bash
# Prints the path of a Node.js binary of the given major version (or exact version) and arch
# (x64 or arm64), fetched once from the npm registry (the `node-linux-<arch>` packages carry
# the official binaries) into a cache directory; a cached one is used without the network.
# Used to test the package on Node 22 and 24 and on arm64.
#   scripts/fetch-node.sh 22           → /var/cache/memory-server/node/v22.x.y-linux-x64/bin/node
#   scripts/fetch-node.sh 20 arm64     → …/v20.x.y-linux-arm64/bin/node (run it under qemu)
set -euo pipefail
want=${1:?usage: fetch-node.sh MAJOR|VERSION [x64|arm64]}
arch=${2:-x64}
cache=${MEMORY_SERVER_NODE_CACHE:-${MEMORY_SERVER_CACHE:-/var/cache/memory-server}/node}
mkdir -p "$cache"
cached=$(find "$cache" -maxdepth 1 -type d \( -name "v$want-linux-$arch" -o -name "v$want.*-linux-$arch" \) \
  -exec test -f '{}/.complete' \; -print 2>/dev/null | sort -V | tail -n1)
if [ -n "$cached" ]; then echo "$cached/bin/node"; exit 0; fi

tmp=$(mktemp -d "$cache/.pack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# From an empty directory, so no project .npmrc applies.
tgz=$(cd "$tmp" && npm pack --silent "node-linux-$arch@$want" | tail -n1)
[ -f "$tmp/$tgz" ] || { echo "fetch-node.sh: npm pack node-linux-$arch@$want gave no tarball" >&2; exit 1; }
version=${tgz#node-linux-"$arch"-}; version=${version%.tgz}
mkdir "$tmp/x" && tar -xzf "$tmp/$tgz" -C "$tmp/x"
[ -x "$tmp/x/package/bin/node" ] || { echo "fetch-node.sh: $tgz has no bin/node" >&2; exit 1; }
dir="$cache/v$version-linux-$arch"
rm -rf "$dir" && mv "$tmp/x/package" "$dir" && touch "$dir/.complete"
echo "$dir/bin/node"
