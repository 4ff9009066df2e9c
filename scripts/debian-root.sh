#!/usr/bin/env bash
# Manage a Debian 13 (trixie) root on a Debian 12 host, for what the host cannot do itself:
# cross-building the napi addon for aarch64 with trixie-backports' rustc, running aarch64
# programs under qemu-user (no binfmt_misc needed: the runner is called explicitly), and
# running Node builds that need glibc >= 2.38.
#
#   scripts/debian-root.sh ensure
#       Create or upgrade the root (idempotent; a no-op taking milliseconds when the root
#       carries the marker of the current recipe).
#   scripts/debian-root.sh run [--bind HOSTDIR[:DIR]]... [--env NAME[=VALUE]]... [--cwd DIR] [--] CMD...
#       Run CMD inside the root with /proc, /sys, /dev, /dev/pts and /dev/shm mounted and each
#       HOSTDIR bind-mounted at DIR (default: the same path). Everything is unmounted on exit,
#       also on failure; when `unshare` works the mounts additionally live in a private mount
#       namespace, so concurrent runs do not see each other's and a killed run leaves nothing.
#       Environment inside: PATH, HOME=/root, LANG=C.UTF-8, TERM, CI (when set), the --env
#       ones (NAME alone passes the host's value), and NODE_EXTRA_CA_CERTS pointing at the
#       root's bundle when the host sets it. The root's CA bundle follows the CAs the host
#       added in /usr/local/share/ca-certificates (e.g. an egress proxy's).
#       The working directory is --cwd, else the current directory when it lies in a bound
#       directory, else /root.
#   scripts/debian-root.sh path       Print the root's path.
#   scripts/debian-root.sh status     Say whether the root is ready for the current recipe.
#
# Environment: MEMORY_SERVER_DEBIAN_ROOT (default /var/cache/memory-server/trixie-root),
# MEMORY_SERVER_DEBIAN_MIRROR (default: the Debian mirror of the host's apt sources, else
# debootstrap's default). It must serve trixie and trixie-backports.
# Needs root (mount, chroot). `ensure` contacts only the Debian mirror.
set -euo pipefail

ROOT=${MEMORY_SERVER_DEBIAN_ROOT:-/var/cache/memory-server/trixie-root}
ROOT=${ROOT%/}
MIRROR=${MEMORY_SERVER_DEBIAN_MIRROR:-}   # default: the host's Debian mirror (see debian_mirror)
SUITE=trixie
SELF=$(readlink -f "${BASH_SOURCE[0]}")

# Packages of the recipe. rustc/cargo and the aarch64 std come from trixie-backports (one
# version: libstd-rust-dev is Multi-Arch: same, so the arm64 copy must match the amd64 rustc).
BACKPORTS_PKGS=(rustc cargo libstd-rust-dev libstd-rust-dev:arm64)
PKGS=(
  ca-certificates file xz-utils
  gcc libc6-dev                                  # host linker for build scripts / proc macros
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross    # aarch64 linker, C compiler (mimalloc) and libc
  binutils-aarch64-linux-gnu                     # aarch64 objdump/strip
  libc6:arm64 libstdc++6:arm64                   # so aarch64 programs (node) run under qemu
  qemu-user-static
)
# Bump RECIPE_REV when the recipe changes in a way the package lists do not show; the marker
# also records the package lists, so editing them upgrades existing roots by itself.
RECIPE_REV=1
RECIPE="memory-server-debian-root rev=$RECIPE_REV suite=$SUITE backports=[${BACKPORTS_PKGS[*]}] pkgs=[$(printf '%s\n' "${PKGS[@]}" | sort | tr '\n' ' ')]"
MARKER_NAME=.memory-server-root-recipe
MARKER="$ROOT/$MARKER_NAME"
LOCK="$ROOT.lock"

log() { printf '[debian-root] %s\n' "$*" >&2; }
die() { printf '[debian-root] error: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (uses debootstrap, mount and chroot)"; }

root_ready() { [[ -f $MARKER && "$(cat "$MARKER" 2>/dev/null)" == "$RECIPE" ]]; }

# Mount points at or below $1 (deepest first), as seen in this mount namespace.
mounts_under() {
  local dir; dir=$(readlink -f "$1" 2>/dev/null || printf '%s' "$1")
  awk -v d="$dir" '{ p = $5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' \
    /proc/self/mountinfo | sort -r
}

umount_under() {
  local m
  while read -r m; do
    [[ -n $m ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done < <(mounts_under "$1")
}

# ------------------------------------------------------------------ mounting and running inside

MOUNTED=()   # mount points made by this process, in mount order

cleanup_mounts() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null \
      || log "warning: could not unmount ${MOUNTED[i]}"
  done
  MOUNTED=()
}

do_mount() {  # do_mount TARGET MOUNT-ARGS...
  local target=$1; shift
  mount "$@" "$target" || die "mount $* $target failed"
  MOUNTED+=("$target")
}

# mount_system ROOT: /proc, /sys, /dev, /dev/pts, /dev/shm.
mount_system() {
  local r=$1
  mkdir -p "$r/proc" "$r/sys" "$r/dev"
  do_mount "$r/proc" -t proc proc
  # A fresh sysfs needs a network namespace of our own; bind the host's otherwise.
  if mount -t sysfs sysfs "$r/sys" 2>/dev/null; then MOUNTED+=("$r/sys")
  else do_mount "$r/sys" --rbind /sys; fi
  do_mount "$r/dev" --bind /dev
  if [[ -d /dev/pts ]]; then do_mount "$r/dev/pts" --bind /dev/pts; fi
  if [[ -d /dev/shm ]]; then do_mount "$r/dev/shm" --bind /dev/shm; fi
}

# bind_dir ROOT HOSTPATH DIR
bind_dir() {
  local r=$1 src=$2 dst=$3
  [[ -e $src ]] || die "--bind: $src does not exist"
  src=$(readlink -f "$src")
  [[ $dst == /* ]] || die "--bind: target $dst must be an absolute path"
  case "$dst" in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) die "--bind: refusing target $dst";; esac
  if [[ -d $src ]]; then mkdir -p "$r$dst"
  else mkdir -p "$(dirname "$r$dst")"; [[ -e $r$dst ]] || : >"$r$dst"; fi
  do_mount "$r$dst" --bind "$src"
}

refresh_etc() {  # keep name resolution working on this host (atomic replace)
  local r=$1
  if [[ -e /etc/resolv.conf ]] && ! cmp -s /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null; then
    cp -L /etc/resolv.conf "$r/etc/resolv.conf.tmp.$$" && mv -f "$r/etc/resolv.conf.tmp.$$" "$r/etc/resolv.conf"
  fi
  if ! grep -qs '^127\.0\.0\.1[[:space:]].*localhost' "$r/etc/hosts"; then
    { [[ -s $r/etc/hosts ]] && echo; printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n'; } >>"$r/etc/hosts"
  fi
}

# The root trusts the CAs the host added locally (/usr/local/share/ca-certificates: e.g. a
# TLS-inspecting egress proxy's CA, which can change between boots), so cargo/npm in the root
# reach the registries like the host does. Cheap when nothing changed (one hash).
sync_ca() {
  local r=$1 src=/usr/local/share/ca-certificates
  local dst=$r/usr/local/share/ca-certificates stamp=$r/var/lib/memory-server-ca.stamp want
  [[ -x $r/usr/sbin/update-ca-certificates ]] || return 0
  want=$(if [[ -d $src ]]; then cd "$src" && find . -type f -name '*.crt' -print0 | sort -z | xargs -0r sha256sum; fi | sha256sum | cut -d' ' -f1)
  [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && return 0
  (
    flock -x 9
    [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && exit 0
    mkdir -p "$dst"
    find "$dst" -mindepth 1 -delete
    if [[ -d $src ]]; then cp -a "$src/." "$dst/"; fi
    chroot "$r" /usr/sbin/update-ca-certificates --fresh >/dev/null 2>&1 || { log "warning: update-ca-certificates failed in the root"; exit 0; }
    printf '%s\n' "$want" >"$stamp"
    log "root CA bundle refreshed from the host's /usr/local/share/ca-certificates"
  ) 9>"$r.ca.lock"
}

SANE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

CHILD=""   # pid of the command running in the root

on_signal() {  # forward to the command, let it finish, unmount, exit 128+N
  local sig=$1 code=$2
  if [[ -n $CHILD ]]; then kill "-$sig" "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
  cleanup_mounts
  exit "$code"
}

# in_root ROOT BINDS_NAME ENVS_NAME CWD -- CMD... : mount, chroot, run, unmount.
in_root() {
  local r=$1 cwd=$4
  local -n binds_ref=$2 envs_ref=$3
  shift 4; [[ ${1:-} == -- ]] && shift
  trap 'cleanup_mounts' EXIT
  trap 'on_signal INT 130' INT
  trap 'on_signal TERM 143' TERM
  trap 'on_signal HUP 129' HUP
  mount_system "$r"
  local b
  for b in "${binds_ref[@]}"; do bind_dir "$r" "${b%%|*}" "${b#*|}"; done
  local env_args=(PATH="$SANE_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}")
  [[ -n ${CI+x} ]] && env_args+=(CI="$CI")
  # Node keeps its own CA list: point it at the root's bundle where the host adds CAs too.
  [[ -n ${NODE_EXTRA_CA_CERTS:-} ]] && env_args+=(NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
  env_args+=("${envs_ref[@]}")
  local rc=0
  # shellcheck disable=SC2016  # $1/$@ are the inner shell's
  # In the background (stdin passed explicitly, not /dev/null) so that a signal to this
  # script is handled at once (bash defers traps while a foreground command runs).
  chroot "$r" /usr/bin/env -i "${env_args[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@" <&0 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  cleanup_mounts
  trap - EXIT INT TERM HUP
  return "$rc"
}

cmd_run() {
  need_root
  local binds=() envs=() cwd=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --bind) [[ $# -ge 2 ]] || die "--bind needs HOSTDIR[:DIR]"
              local spec=$2 src dst; src=${spec%%:*}
              if [[ $spec == *:* ]]; then dst=${spec#*:}; else dst=$(readlink -f "$src" 2>/dev/null || echo "$src"); fi
              binds+=("$src|$dst"); shift 2;;
      --bind=*) set -- --bind "${1#--bind=}" "${@:2}";;
      --env) [[ $# -ge 2 ]] || die "--env needs NAME[=VALUE]"
             if [[ $2 == *=* ]]; then envs+=("$2")
             elif [[ -n ${!2+x} ]]; then envs+=("$2=${!2}"); fi
             shift 2;;
      --cwd) [[ $# -ge 2 ]] || die "--cwd needs DIR"; cwd=$2; shift 2;;
      --) shift; break;;
      -*) die "run: unknown option $1";;
      *) break;;
    esac
  done
  [[ $# -gt 0 ]] || die "run: no command given"
  root_ready || die "root $ROOT is not ready for the current recipe: run '$0 ensure' first"
  if [[ -z $cwd ]]; then
    local here b d; here=$(pwd -P); cwd=/root
    for b in "${binds[@]}"; do
      d=$(readlink -f "${b%%|*}" 2>/dev/null || true)
      if [[ -n $d && ( $here == "$d" || $here == "$d"/* ) ]]; then cwd="${b#*|}${here#"$d"}"; break; fi
    done
  fi
  # Shared lock: `ensure` (exclusive) waits for running commands and vice versa.
  exec {lock_fd}>"$LOCK"
  flock -s "$lock_fd"
  refresh_etc "$ROOT"
  sync_ca "$ROOT"
  local bind_str env_str
  if [[ -z ${_MEMORY_SERVER_IN_NS:-} ]] && unshare --mount --propagation private true 2>/dev/null; then
    # Serialize the parsed arguments through the environment and re-enter in a private mount
    # namespace (the lock fd is inherited).
    bind_str="" env_str=""
    [[ ${#binds[@]} -gt 0 ]] && bind_str=$(printf '%s\0' "${binds[@]}" | base64 -w0)
    [[ ${#envs[@]} -gt 0 ]] && env_str=$(printf '%s\0' "${envs[@]}" | base64 -w0)
    _MEMORY_SERVER_IN_NS=1 _MS_BINDS=$bind_str _MS_ENVS=$env_str _MS_CWD=$cwd \
      exec unshare --mount --propagation private -- bash "$SELF" __run-in-ns "$@"
  fi
  in_root "$ROOT" binds envs "$cwd" -- "$@"
}

cmd_run_in_ns() {  # internal: second half of `run` inside the private mount namespace
  local binds=() envs=()
  [[ -n ${_MS_BINDS:-} ]] && mapfile -d '' -t binds < <(printf '%s' "$_MS_BINDS" | base64 -d)
  [[ -n ${_MS_ENVS:-} ]] && mapfile -d '' -t envs < <(printf '%s' "$_MS_ENVS" | base64 -d)
  local cwd=$_MS_CWD
  unset _MS_BINDS _MS_ENVS _MS_CWD
  in_root "$ROOT" binds envs "$cwd" -- "$@"
}

# ------------------------------------------------------------------------------------- ensure

# The mirror: $MEMORY_SERVER_DEBIAN_MIRROR, else the one the root already uses, else the
# host's (first non-security Debian source), else empty (debootstrap's default).
debian_mirror() {
  local u=$MIRROR
  if [[ -z $u && -f $ROOT/etc/apt/sources.list.d/debian.sources ]]; then
    u=$(sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' "$ROOT/etc/apt/sources.list.d/debian.sources" | head -n1)
  fi
  if [[ -z $u && -f $ROOT/etc/apt/sources.list ]]; then
    u=$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$ROOT/etc/apt/sources.list" | head -n1)
  fi
  if [[ -z $u ]]; then
    u=$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
         | sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' | grep -v -- '-security' | head -n1 || true)
  fi
  if [[ -z $u ]]; then
    u=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
         | sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' | grep -v -- '-security' | head -n1 || true)
  fi
  printf '%s' "${u%/}"
}

host_apt_install() {  # install host packages (debootstrap) if missing
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing on the host: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

bootstrap() {
  local partial="$ROOT.partial"
  if [[ -d $partial ]]; then
    log "removing a half-made bootstrap at $partial"
    umount_under "$partial"
    rm -rf --one-file-system "$partial"
  fi
  host_apt_install debootstrap debian-archive-keyring
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] || log "warning: the host keyring may lack trixie's keys"
  local mirror; mirror=$(debian_mirror)
  log "debootstrap --variant=minbase $SUITE $partial ${mirror:-(the default mirror of debootstrap)} (about a minute)"
  mkdir -p "$(dirname "$ROOT")"
  local t0=$SECONDS dlog="$ROOT.debootstrap.log"
  if ! debootstrap --variant=minbase --keyring="$keyring" "$SUITE" "$partial" ${mirror:+"$mirror"} >"$dlog" 2>&1; then
    tail -n 30 "$dlog" >&2
    umount_under "$partial"
    die "debootstrap failed (full log: $dlog)"
  fi
  umount_under "$partial"   # debootstrap unmounts its own /proc and /sys; be sure
  mv "$partial" "$ROOT"
  log "debootstrap done in $((SECONDS - t0)) s"
}

provision_script() {  # runs inside the root via /bin/sh
  local mirror; mirror=$(debian_mirror)
  [[ -n $mirror ]] || die "cannot tell which Debian mirror to use: set MEMORY_SERVER_DEBIAN_MIRROR"
  cat <<EOF
set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<'SRC'
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n' >/etc/apt/apt.conf.d/90memory-server
printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' >/etc/dpkg/dpkg.cfg.d/90memory-server-nodoc
dpkg --add-architecture arm64
dpkg --configure -a
apt-get update -q
apt-get install -y -q -f
apt-get install -y -q ${PKGS[*]}
# One rustc version for both architectures (libstd-rust-dev is Multi-Arch: same). The mirror's
# backports index lists only each architecture's newest build, and one can lag (2026-12-06:
# rustc 1.98.1 for amd64, libstd-rust-dev:arm64 still 1.97.1): then the older version is
# installed, the other architecture's packages of it taken from the pool by URL (still there
# for a while after the index moved on).
bp_version() { apt-cache madison "\$1" | awk -F'|' '/$SUITE-backports/ { gsub(/ /, "", \$2); print \$2; exit }'; }
v_amd=\$(bp_version rustc); v_arm=\$(bp_version libstd-rust-dev:arm64)
[ -n "\$v_amd" ] && [ -n "\$v_arm" ] || { echo "no rustc / libstd-rust-dev:arm64 in $SUITE-backports" >&2; exit 1; }
if [ "\$v_amd" = "\$v_arm" ]; then
  apt-get install -y -q -t $SUITE-backports ${BACKPORTS_PKGS[*]}
else
  if dpkg --compare-versions "\$v_arm" lt "\$v_amd"; then v=\$v_arm; else v=\$v_amd; fi
  mm=\$(echo "\$v" | sed 's/^\([0-9]*\.[0-9]*\).*/\1/')
  echo "backports: rustc \$v_amd (amd64) and libstd-rust-dev \$v_arm (arm64) differ: installing \$v for both"
  debs=/var/cache/memory-server-rustc-debs; rm -rf "\$debs"; mkdir -p "\$debs"
  fetch() {  # package arch
    /usr/lib/apt/apt-helper download-file "$mirror/pool/main/r/rustc/\$1_\${v}_\$2.deb" "\$debs/\$1_\${v}_\$2.deb"
  }
  want=""
  if [ "\$v_amd" != "\$v" ]; then
    for p in rustc cargo libstd-rust-dev libstd-rust-\$mm; do fetch \$p amd64; done
  else
    want="rustc=\$v cargo=\$v libstd-rust-dev=\$v"
  fi
  if [ "\$v_arm" != "\$v" ]; then
    for p in libstd-rust-dev libstd-rust-\$mm; do fetch \$p arm64; done
  else
    want="\$want libstd-rust-dev:arm64=\$v"
  fi
  apt-get install -y -q "\$debs"/*.deb \$want
  rm -rf "\$debs"
fi
apt-get clean
rm -rf /var/lib/apt/lists/*_Contents-* 2>/dev/null || true
EOF
}

verify_script() {
  cat <<'EOF'
set -eu
host_rustc=$(dpkg-query -W -f='${Version}' rustc)
std_arm64=$(dpkg-query -W -f='${Version}' libstd-rust-dev:arm64)
[ "$host_rustc" = "$std_arm64" ] || { echo "rustc $host_rustc != libstd-rust-dev:arm64 $std_arm64" >&2; exit 1; }
ls -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib >/dev/null
Q=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
echo "rustc: $(rustc --version)"; echo "cargo: $(cargo --version)"
echo "aarch64 gcc: $(aarch64-linux-gnu-gcc -dumpfullversion)"
echo "qemu: $($Q --version | head -n1) ($Q)"
echo "glibc: $(dpkg-query -W -f='${Version}' libc6:amd64) (amd64), $(dpkg-query -W -f='${Version}' libc6:arm64) (arm64)"
# An aarch64 program runs under qemu with the root's arm64 libc.
echo 'int main(void){return 0;}' >/tmp/.probe.c
aarch64-linux-gnu-gcc -o /tmp/.probe /tmp/.probe.c
"$Q" /tmp/.probe && echo "qemu-user runs aarch64 binaries: ok"
rm -f /tmp/.probe /tmp/.probe.c
EOF
}

cmd_ensure() {
  need_root
  if root_ready; then log "root $ROOT is ready"; return 0; fi
  mkdir -p "$(dirname "$ROOT")"
  exec {lock_fd}>"$LOCK"
  if ! flock -x -w 1 "$lock_fd"; then
    log "waiting for another user of $ROOT to finish"
    flock -x "$lock_fd"
  fi
  if root_ready; then log "root $ROOT is ready"; return 0; fi   # made meanwhile
  local t0=$SECONDS
  if [[ ! -x $ROOT/usr/bin/apt-get ]]; then
    [[ -e $ROOT ]] && { log "removing unusable $ROOT"; umount_under "$ROOT"; rm -rf --one-file-system "$ROOT"; }
    bootstrap
  elif [[ -f $MARKER ]]; then
    log "root was made by another recipe; upgrading it"
  else
    log "root is half-made; completing it"
  fi
  rm -f "$MARKER"
  umount_under "$ROOT"
  refresh_etc "$ROOT"
  # shellcheck disable=SC2034  # passed by name to in_root
  local none=() t1=$SECONDS plog="$ROOT.provision.log"
  log "installing the toolchain in the root (log: $plog)"
  if ! in_root "$ROOT" none none / -- /bin/sh -c "$(provision_script)" >"$plog" 2>&1; then
    tail -n 40 "$plog" >&2
    die "provisioning failed (full log: $plog); run ensure again to retry"
  fi
  log "packages installed in $((SECONDS - t1)) s"
  rm -f "$ROOT/var/lib/memory-server-ca.stamp"
  sync_ca "$ROOT"
  in_root "$ROOT" none none / -- /bin/sh -c "$(verify_script)" >&2 || die "verification of the root failed"
  printf '%s\n' "$RECIPE" >"$MARKER.tmp" && mv -f "$MARKER.tmp" "$MARKER"
  log "root $ROOT ready in $((SECONDS - t0)) s"
}

cmd_status() {
  if root_ready; then echo "ready: $ROOT"; else echo "not ready: $ROOT"; return 1; fi
}

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
  ensure) shift; cmd_ensure "$@";;
  run) shift; cmd_run "$@";;
  __run-in-ns) shift; cmd_run_in_ns "$@";;
  path) echo "$ROOT";;
  status) cmd_status;;
  -h|--help|help) usage;;
  *) usage >&2; exit 2;;
esac
