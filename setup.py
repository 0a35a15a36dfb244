"""Packaging for libarms, its C core, the test server and the B-route bridge.

The C core (``libarms._core``) is built by cffi in API (out-of-line) mode from ``csrc/``;
``pip install .`` needs gcc, the Python headers and OpenSSL's headers (Debian: build-essential
python3-dev libssl-dev), which ``scripts/bootstrap.sh`` installs.
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CFFI_BUILDER = "csrc/build_core.py"

extra = {}
if os.path.exists(os.path.join(HERE, CFFI_BUILDER)):
    extra["cffi_modules"] = [CFFI_BUILDER + ":ffibuilder"]

setup(
    name="libarms",
    version="0.1.0",
    description="Clean-room, wire-compatible ARMS (SMF/SACM) device agent with a C core, "
                "test server and B-route smart-meter bridge",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-2-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["libarms", "libarms.*", "bridge", "bridge.*"]),
    package_data={"libarms.testserver": ["static/*"], "libarms.daemon": ["data/*"],
                  "bridge": ["broute-bridge.conf.sample", "armsd-command-hook"]},
    setup_requires=["cffi>=1.15"],
    install_requires=[
        "cffi>=1.15",
        "cryptography>=41",
        "defusedxml>=0.7",
        "requests>=2.28",
        "pyserial>=3.5",
        "pyudev>=0.24",
    ],
    extras_require={"test": ["pytest>=7.4", "pytest-timeout>=2.1", "hypothesis>=6.80",
                             "kconfiglib>=14.1"]},
    entry_points={
        "console_scripts": [
            "armsd=libarms.daemon.main:main",
            "arms-testserver=libarms.testserver.cli:main",
            "arms-demo=libarms.demo:main",
            "broute-bridge=bridge.service:main",
            "broute-sim=bridge.sim:main",
        ],
    },
    zip_safe=False,
    **extra,
)
