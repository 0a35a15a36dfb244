#!/usr/bin/env bash
# Build (once) and cache a foreign Debian sysroot for ARCH (armhf | mipsel) under
# build/sysroot-ARCH: Debian's own Python 3.11, OpenSSL (with headers) and the libraries they
# need, unpacked from .debs with `apt-get download` + `dpkg -x` (no multiarch install, no
# maintainer scripts, no binfmt). Run foreign programs as `qemu-arm -L build/sysroot-armhf ...`.
#
# Prints the sysroot path on stdout. Safe to run again: a complete sysroot (stamp file) is reused.
# See /work/shared/design/cross.md for why it is done this way.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: $0 armhf|mipsel}
case "$ARCH" in
    armhf|mipsel) ;;
    *) echo "sysroot.sh: unsupported architecture '$ARCH' (armhf or mipsel)" >&2; exit 2 ;;
esac

PKGS=(libc6 libgcc-s1 libssl3 libssl-dev zlib1g libexpat1 libffi8 python3.11-minimal
      libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev python3-cffi-backend
      libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libtirpc3 libnsl2 libcrypt1 libdb5.3 libgdbm6
      libncursesw6 libtinfo6 libreadline8)
[ "$ARCH" = mipsel ] && PKGS+=(libatomic1)

OUT=build/sysroot-$ARCH
STAMP=$OUT/.complete-$(printf '%s\n' "${PKGS[@]}" | sha1sum | cut -c1-12)
log() { printf '[sysroot %s] %s\n' "$ARCH" "$*" >&2; }

if [ -f "$STAMP" ]; then
    echo "$PWD/$OUT"
    exit 0
fi

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_OPTS=(-o DPkg::Lock::Timeout=300)
if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    log "adding foreign architecture $ARCH to dpkg (index only; nothing foreign is installed)"
    $SUDO dpkg --add-architecture "$ARCH"
    need_update=1
fi
pkg_ok() { apt-cache show "python3.11-minimal:$ARCH" >/dev/null 2>&1; }
if [ "${need_update:-0}" = 1 ] || ! pkg_ok; then
    # apt-get update exits 100 when one index fails (a mirror mid-sync) but goes on with the old
    # index: tolerate it, then check that what we need resolves.
    $SUDO apt-get "${APT_OPTS[@]}" update -qq || log "apt-get update reported errors; checking the indexes it has"
fi
pkg_ok || { log "the package index has no python3.11-minimal:$ARCH; cannot build the sysroot"; exit 1; }

TMP=build/.sysroot-$ARCH.tmp
DEBS=build/debs-$ARCH
rm -rf "$TMP"; mkdir -p "$TMP" "$DEBS"
log "downloading ${#PKGS[@]} packages"
( cd "$DEBS" && apt-get "${APT_OPTS[@]}" download -qq "${PKGS[@]/%/:$ARCH}" ) \
    || { log "apt-get download failed for: ${PKGS[*]}"; exit 1; }
for p in "${PKGS[@]}"; do
    deb=$(ls -t "$DEBS"/"${p}"_*_"$ARCH".deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { log "missing .deb for $p"; exit 1; }
    dpkg -x "$deb" "$TMP"
done
# Debian ships python3.11 without the unversioned name in these packages: add it.
ln -sf python3.11 "$TMP/usr/bin/python3"
touch "$TMP/$(basename "$STAMP")"
rm -rf "$OUT"; mv "$TMP" "$OUT"
log "ready: $OUT"
echo "$PWD/$OUT"
