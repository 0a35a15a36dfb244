"""Where the libarms 5.33 captures are: $ARMS_VECTORS, else shared/ beside the checkout (as CI
lays it out), else /work/shared (developer machines)."""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = [os.environ.get("ARMS_VECTORS", ""),
               str(_REPO.parent / "shared" / "vectors" / "libarms-5.33"),
               "/work/shared/vectors/libarms-5.33"]
VECTORS_DIR = next((p for p in _CANDIDATES if p and os.path.isdir(p)), _CANDIDATES[-1])
