#!/usr/bin/env bash
# scripts/sysroot.sh ARCH  (ARCH = armhf | mipsel)
#
# Build once, then reuse, a foreign Debian sysroot under build/sysroot-ARCH holding libc,
# OpenSSL's libcrypto with its headers (the C core's cross tests link against it), and Debian's
# own Python 3.11 with the libraries it needs (the cross build runs the package under qemu-user).
# Nothing foreign is installed: the .debs are fetched with `apt-get download` and unpacked with
# `dpkg -x` (no maintainer scripts, no version lock against the host, no binfmt). Details and
# the reasons: /work/shared/design/cross.md.
#
# Run foreign programs as:  qemu-arm -L build/sysroot-armhf PROGRAM
# The sysroot's absolute path is printed as the last line on stdout; logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=${1:?usage: scripts/sysroot.sh armhf|mipsel}
case "$ARCH" in
    armhf|mipsel) ;;
    *) echo "sysroot.sh: no sysroot for '$ARCH' (armhf or mipsel; big-endian mips has no Debian userland)" >&2
       exit 2 ;;
esac

PKGS=(libc6 libgcc-s1 libssl3 libssl-dev zlib1g libexpat1 libffi8
      python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev
      python3-cffi-backend libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libtirpc3 libnsl2
      libcrypt1 libdb5.3 libgdbm6 libncursesw6 libtinfo6 libreadline8)
if [ "$ARCH" = mipsel ]; then PKGS+=(libatomic1); fi

DEST=build/sysroot-$ARCH
STAMP="$DEST/.complete-$(printf '%s\n' "${PKGS[@]}" | sha1sum | cut -c1-12)"
say() { printf '[sysroot %s] %s\n' "$ARCH" "$*" >&2; }

if [ -f "$STAMP" ]; then
    echo "$PWD/$DEST"
    exit 0
fi

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
LOCK=(-o DPkg::Lock::Timeout=300)
resolves() { apt-cache show "libssl-dev:$ARCH" "python3.11-minimal:$ARCH" >/dev/null 2>&1; }

if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    say "dpkg --add-architecture $ARCH (package index only)"
    $SUDO dpkg --add-architecture "$ARCH"
fi
if ! resolves; then
    # Exit code 100 means one index failed (e.g. a security mirror mid-sync) while apt went on
    # with what it has: tolerate it and check below whether our packages resolve.
    $SUDO apt-get "${LOCK[@]}" update -qq || say "apt-get update exited $?; using the indexes it has"
fi
resolves || { say "libssl-dev:$ARCH / python3.11-minimal:$ARCH not in the package index: cannot build the sysroot"; exit 1; }

DEBS=build/debs-$ARCH
WORK=build/.sysroot-$ARCH.$$
mkdir -p "$DEBS"
rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
say "fetching ${#PKGS[@]} packages into $DEBS"
fetch() { ( cd "$DEBS" && apt-get "${LOCK[@]}" download -qq "${PKGS[@]/%/:$ARCH}" ); }
if ! fetch; then
    # a stale index names versions the mirror no longer has: refresh once and retry
    say "download failed; refreshing the package index and trying again"
    $SUDO apt-get "${LOCK[@]}" update -qq || say "apt-get update exited $?; using the indexes it has"
    fetch || { say "apt-get download failed for: ${PKGS[*]}"; exit 1; }
fi
for p in "${PKGS[@]}"; do
    deb=$(ls -t "$DEBS/${p}"_*_"$ARCH".deb 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || { say "no .deb for $p after download"; exit 1; }
    dpkg -x "$deb" "$WORK"
done
ln -sf python3.11 "$WORK/usr/bin/python3"
touch "$WORK/$(basename "$STAMP")"
rm -rf "$DEST"
mv "$WORK" "$DEST"
trap - EXIT
say "ready"
echo "$PWD/$DEST"
