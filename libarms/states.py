"""ARMS agent states (libarms 5.33 numeric values, ``spec/arms-agent.md`` §2.2)."""

from __future__ import annotations

import enum


class State(enum.IntEnum):
    INITIAL = 0
    LSPULL = 1
    RSPULL = 2
    PULLDONE = 3
    BOOT_FAIL = 4
    PUSH_INITIAL = 10
    PUSH_SENDREADY = 11
    PUSH_WAIT = 12
    PUSH_ADDTRANS = 13
    PUSH_EXECTRANS = 14
    PUSH_TERM = 15
    PUSH_REBOOT = 16
