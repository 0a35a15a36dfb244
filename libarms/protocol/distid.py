"""The distribution id: the SA's 128-bit identity (``spec/arms-agent.md`` §3.7)."""

from __future__ import annotations

import re
import struct

from .._record import Record
from ..errors import ConfigError

_TEXT_RE = re.compile(r"[0-9A-Fa-f]{1,4}(?:-[0-9A-Fa-f]{1,4}){7}\Z")


class DistributionId(Record):
    """``version`` u16, ``vendor_code`` u32, ``sa_type`` u16, ``sa_code`` u64.

    ``str(d)`` is the wire text: eight groups of four upper-case hex digits (39 characters).
    """

    version: int
    vendor_code: int
    sa_type: int
    sa_code: int

    def __post_init__(self):
        for name, bits in (("version", 16), ("vendor_code", 32), ("sa_type", 16), ("sa_code", 64)):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v < (1 << bits):
                raise ConfigError(f"distribution id {name} must be an integer of {bits} bits, got {v!r}")

    @classmethod
    def parse(cls, text: "str | DistributionId") -> "DistributionId":
        """Parse the text form; like the libarms samples, any 1-4 hex digits per group and any case."""
        if isinstance(text, DistributionId):
            return text
        if not isinstance(text, str) or not _TEXT_RE.match(text.strip()):
            raise ConfigError(f"not a distribution id (want 8 dash-separated groups of hex digits, "
                              f"e.g. 0001-0000-1234-0005-0000-0000-0000-002A): {text!r}")
        g = [int(x, 16) for x in text.strip().split("-")]
        return cls(g[0], (g[1] << 16) | g[2], g[3], (g[4] << 48) | (g[5] << 32) | (g[6] << 16) | g[7])

    @classmethod
    def from_bytes(cls, data: bytes) -> "DistributionId":
        if len(data) != 16:
            raise ConfigError(f"a binary distribution id has 16 bytes, got {len(data)}")
        return cls(*struct.unpack(">HIHQ", data))

    def to_bytes(self) -> bytes:
        """Big-endian 16 bytes, as in the heartbeat TLV 0x0011."""
        return struct.pack(">HIHQ", self.version, self.vendor_code, self.sa_type, self.sa_code)

    def __str__(self) -> str:
        v = self.vendor_code
        s = self.sa_code
        groups = (self.version, v >> 16, v & 0xFFFF, self.sa_type,
                  (s >> 48) & 0xFFFF, (s >> 32) & 0xFFFF, (s >> 16) & 0xFFFF, s & 0xFFFF)
        return "-".join(f"{g:04X}" for g in groups)
