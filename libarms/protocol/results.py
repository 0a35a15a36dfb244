"""ARMS result codes (``spec/arms-wire.md`` §3.3) and how the device classes them."""

from __future__ import annotations

#: The exact description texts libarms writes, typos included.
RESULT_TEXT = {
    100: "Success",
    102: "Command Execute Error",
    201: "Invalid XML",
    202: "Invalid Message type",
    203: "Invalid Parameter",
    301: "Server Busy",
    302: "SA Busy",
    303: "Module syncing",
    400: "Bad Request",
    401: "Server Failure",
    402: "SA Failure",
    403: "Authentication Falure",
    404: "SA Marked as stand-by",
    405: "Not found",
    406: "Too many Transaction",
    407: "Too many Status",
    408: "Invalid Storage",
    409: "Invalid Module ID",
    410: "Validation Failure",
    411: "Commit Failure",
    412: "Transction Failure",
    413: "Resource Exhausted",
    414: "SA Rollbacked",
    415: "System Error",
    416: "System Mismatch",
    417: "Invalid Hardware",
    418: "Invalid Firmware",
    419: "Module Sync needed",
    420: "Distribution ID not found",
    421: "Configuration not found",
    422: "Multiple Request",
    423: "Distribution ID Mismatch",
    501: "Out of Service",
    502: "Push Failed",
    503: "Need Reboot",
    504: "Addresss Mismatch",
    505: "Not Support",
    506: "Server Moved",
    507: "Invalid type",
    508: "Rollback Failure",
}

SUCCESS = 100
OUT_OF_SERVICE = 501
PUSH_FAILED = 502
NEED_REBOOT = 503
INVALID_TYPE = 507
ROLLBACK_FAILURE = 508


def result_text(code: int) -> str:
    """Description text libarms writes for ``code`` ("Unknown result" for any other number)."""
    return RESULT_TEXT.get(code, "Unknown result")


def is_success(code: int) -> bool:
    return 100 <= code <= 199


def result_class(code: int) -> int:
    """1 success, 2 format error, 3 temporary, 4 failure, 5 fatal (0 outside 100..599)."""
    return code // 100 if 100 <= code <= 599 else 0
