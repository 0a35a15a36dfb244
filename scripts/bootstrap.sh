#!/usr/bin/env bash
# Set up everything the demo and the test suite need on a fresh Debian 12 machine:
# Debian packages (compilers, OpenSSL headers, cross compilers, qemu-user) and a virtualenv in
# .venv with this project installed (editable, with its test extras) and its C core built.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cross libc headers are only Recommends of the cross compilers: name them (we install
# without recommends).
APT_PKGS=(build-essential python3-dev python3-venv libssl-dev pkg-config
          gcc-arm-linux-gnueabihf gcc-mipsel-linux-gnu gcc-mips-linux-gnu qemu-user
          libc6-dev-armhf-cross libc6-dev-mipsel-cross libc6-dev-mips-cross
          iproute2 procps shellcheck)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Debian packages: ${missing[*]}"
    # apt-get update exits 100 when one index fails (a mirror mid-sync) but still goes on with
    # the old index: tolerate that and let the install say whether the packages resolve.
    $SUDO apt-get update -qq || log "apt-get update reported errors; continuing with the indexes it has"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || { log "could not install: ${missing[*]}"; exit 1; }
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    $PY -m venv .venv
fi
stamp=.venv/.installed-$(cat setup.py | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    log "installing the project and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
    .venv/bin/python -m pip install -q -e '.[test]'
    rm -f .venv/.installed-*; touch "$stamp"
fi
# The editable install does not rebuild the C core when csrc/ changes: do it every time (fast
# when nothing changed).
if [ -f csrc/build_core.py ]; then
    .venv/bin/python csrc/build_core.py --inplace >&2
fi
log "ready"
