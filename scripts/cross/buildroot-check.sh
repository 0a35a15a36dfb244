#!/usr/bin/env bash
# Check buildroot/ against a real Buildroot checkout, as far as that works without network:
# Buildroot's own check-package on every file of the tree, the SA-M1 defconfig through
# Buildroot's Kconfig (nothing of ours dropped), the packages' final dependencies, and the rsync
# of each local-source package (what would be built). A full build needs Buildroot's downloads.
#
#   bash scripts/cross/buildroot-check.sh /path/to/buildroot [OUTPUT_DIR]
#
# Needs: make, gcc, rsync, cpio (Buildroot's host checks); check-package needs python-magic,
# flake8 and shellcheck (PYTHON=/path/to/python with them installed).
set -euo pipefail
cd "$(dirname "$0")/../.."
BR=${1:?usage: $0 /path/to/buildroot [output-dir]}
OUT=${2:-build/buildroot-check}
EXT=$PWD/buildroot
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
say() { printf '[buildroot-check] %s\n' "$*" >&2; }

say "check-package"
(cd "$BR" && "${PYTHON:-python3}" ./utils/check-package -b $(find "$EXT" -type f))

say "defconfig through Buildroot's Kconfig"
make -s -C "$BR" O="$OUT" BR2_EXTERNAL="$EXT" sa_m1_libarms_defconfig
missing=0
while IFS= read -r line; do
    case "$line" in BR2_*=*) grep -qxF "$line" "$OUT/.config" || { say "dropped: $line"; missing=1; } ;; esac
done < "$EXT/configs/sa_m1_libarms_defconfig"
[ "$missing" = 0 ] || exit 1

say "final dependencies"
make -s -C "$BR" O="$OUT" printvars \
    VARS="LIBARMS_CORE_FINAL_DEPENDENCIES PYTHON_LIBARMS_FINAL_DEPENDENCIES BROUTE_BRIDGE_FINAL_DEPENDENCIES"

say "rsync of the local sources"
make -s -C "$BR" O="$OUT" libarms-core-extract python-libarms-extract broute-bridge-extract
du -sh "$OUT"/build/libarms-core-* "$OUT"/build/python-libarms-* "$OUT"/build/broute-bridge-*
say "ok"
