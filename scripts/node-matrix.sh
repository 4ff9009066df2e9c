#!/usr/bin/env bash
# The Node × platform matrix of the packed package, each cell run for real:
#   linux-x64, Debian 12 host (glibc 2.36): Node 20 is the host's and is covered by
#       scripts/install-e2e.mjs; Node 22 and 24 must refuse to start with one line naming
#       Node, the platform and glibc (no uWebSockets.js build loads there), no stack trace.
#   linux-x64, Debian 13 root (glibc 2.41, scripts/debian-root.sh): Node 20, 22 and 24 each
#       run the whole registry test (scripts/install-e2e.mjs --node …) and the vitest suite
#       (from the built tree; the browser tests skip there) inside the root.
# Node binaries come from the npm registry (scripts/fetch-node.sh). Needs the tarballs from
# `node scripts/pack-release.mjs` in .release/ (packed here with --no-build when missing).
# Writes .release/node-matrix.json and prints a table. Exit 1 if any cell failed.
#   scripts/node-matrix.sh [--only host|root] [MAJOR...]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
only=""
if [[ ${1:-} == --only ]]; then only=$2; shift 2; fi
majors=("$@")
[[ ${#majors[@]} -gt 0 ]] || majors=(20 22 24)

log() { printf '[node-matrix] %s\n' "$*"; }
# A log without its colour codes (vitest colours its output under CI=true).
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
results=()
failed=0
record() { # cell result detail
  results+=("$(node -e 'console.log(JSON.stringify({cell:process.argv[1],result:process.argv[2],detail:process.argv[3]}))' "$1" "$2" "$3")")
  log "$1: $2 — $3"
  [[ $2 == pass* ]] || failed=1
}

ls .release/memory-server-[0-9]*.tgz >/dev/null 2>&1 || node scripts/pack-release.mjs --no-build >/dev/null

host_glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [[ -z $only || $only == host ]]; then
  for major in "${majors[@]}"; do
    [[ $major == 20 ]] && continue
    nodebin=$(scripts/fetch-node.sh "$major")
    data=$(mktemp -d)
    set +e
    out=$("$nodebin" dist/cli/main.js --no-control --port 0 --inference-port 0 --data-dir "$data" 2>&1)
    code=$?
    set -e
    rm -rf "$data"
    cell="linux-x64 glibc $host_glibc, Node $("$nodebin" --version)"
    if [[ $code == 1 && $(printf '%s\n' "$out" | wc -l) == 1 && $out == *"no uWebSockets.js build loads on Node"*"glibc $host_glibc"* ]]; then
      record "$cell" "pass (refused as designed)" "${out:0:160}…"
    else
      record "$cell" "FAIL" "exit $code: ${out:0:400}"
    fi
  done
fi

if [[ -z $only || $only == root ]]; then
  scripts/debian-root.sh ensure
  npm_cli=$(readlink -f "$(command -v npm)")
  pnpm_cli=$(readlink -f "$(command -v pnpm)")
  for major in "${majors[@]}"; do
    nodebin=$(scripts/fetch-node.sh "$major")
    start=$(date +%s)
    set +e
    scripts/debian-root.sh run --bind "$repo" --bind /var/cache/memory-server/node --bind /usr/lib/node_modules \
      --env NPM_CLI_JS="$npm_cli" --env PNPM_CLI_JS="$pnpm_cli" --cwd "$repo" -- \
      "$nodebin" scripts/install-e2e.mjs --node "$nodebin" --tarballs .release > ".release/matrix-root-node$major.log" 2>&1
    code=$?
    set -e
    # The whole vitest suite on this Node too (the browser tests skip: no chromium in the root).
    bindir=$(mktemp -d)
    printf '#!/bin/sh\nexec %s "$@"\n' "$nodebin" > "$bindir/node"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$nodebin" "$npm_cli" > "$bindir/npm"
    chmod +x "$bindir/node" "$bindir/npm"
    set +e
    scripts/debian-root.sh run --bind "$repo" --bind /var/cache/memory-server/node --bind /usr/lib/node_modules --bind "$bindir" \
      --env PATH="$bindir:/usr/local/bin:/usr/bin:/bin" --cwd "$repo" -- \
      "$nodebin" node_modules/vitest/vitest.mjs run > ".release/matrix-root-vitest-node$major.log" 2>&1
    vcode=$?
    set -e
    rm -rf "$bindir"
    vsummary=$(plain ".release/matrix-root-vitest-node$major.log" | grep -E '^ +Tests ' | tail -1 | sed 's/^ *//' || true)
    glibc=$(grep -oE 'glibc [0-9.]+' ".release/matrix-root-node$major.log" | head -1 || true)
    cell="linux-x64 Debian 13 root ($glibc), Node $("$nodebin" --version)"
    summary=$(grep -E 'figures:' ".release/matrix-root-node$major.log" | tail -1 | sed 's/.*figures: //' || true)
    if [[ $code == 0 && $vcode == 0 ]]; then
      record "$cell" "pass" "install-e2e + vitest ($vsummary) in $(( $(date +%s) - start )) s: $summary"
    elif [[ $code == 0 ]]; then
      record "$cell" "FAIL" "vitest on this Node: $vsummary"
      plain ".release/matrix-root-vitest-node$major.log" | grep -E '^ FAIL | × ' | head -20 || true
    else
      record "$cell" "FAIL" "$(grep -E 'FAIL' ".release/matrix-root-node$major.log" | head -5 | tr '\n' ' ' || true)"
      tail -30 ".release/matrix-root-node$major.log"
    fi
  done
fi

printf '[%s]\n' "$(IFS=,; echo "${results[*]}")" > .release/node-matrix.json
log "written .release/node-matrix.json"
exit $failed
