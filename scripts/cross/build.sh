#!/usr/bin/env bash
# Cross build for ARCH (armhf | mipsel): the sysroot (cached under build/sysroot-ARCH), the C
# core's cffi extension cross-compiled against that sysroot's Python 3.11 and libcrypto, and a
# self-contained staging tree build/stage-ARCH that Debian's Python runs under qemu-user:
#
#   bash scripts/cross/build.sh armhf
#   S=build/sysroot-armhf; PYTHONPATH=build/stage-armhf qemu-arm -L $S $S/usr/bin/python3.11 -c 'import libarms._core'
#
# Prints the staging directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:?usage: $0 armhf|mipsel [build.py options]}
shift
[ -x .venv/bin/python ] || bash scripts/bootstrap.sh >&2
# The sysroot (Debian's Python, OpenSSL and their libraries, unpacked; cached) is the same one
# the C core's cross tests use.
SYSROOT=$(bash scripts/sysroot.sh "$ARCH" | tail -1)
exec .venv/bin/python scripts/cross/build.py --arch "$ARCH" --sysroot "$SYSROOT" "$@"
