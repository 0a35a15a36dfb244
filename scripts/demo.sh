#!/usr/bin/env bash
# The main job: a local demo of the whole system on this machine, set-up included.
# Extra arguments go to the demo (try --help; --once runs through and exits).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m libarms.demo "$@"
