"""armsd logging: one event per line, with the distribution id and the agent state, no secrets.

Destinations: stderr (default in the foreground), a file (``-l FILE``, appended), or syslog
(``--syslog``, or by default once daemonised; facility ``LOG_DAEMON``, ident ``armsd``).
Line format (stderr and file)::

    2026/11/26 01:02:03.456 armsd[123] INFO [0001-...-5566 PUSH_WAIT] message
"""

from __future__ import annotations

import logging
import os
import sys

from .hooks import Redactor

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional


class ArmsdFormatter(logging.Formatter):
    def __init__(self, distribution_id: str, tracker, redact: Redactor, syslog: bool = False):
        fmt = ("armsd[%(process)d]: %(levelname)s [%(arms)s] %(message)s" if syslog else
               "%(asctime)s.%(msecs)03d armsd[%(process)d] %(levelname)s [%(arms)s] %(message)s")
        super().__init__(fmt, datefmt="%Y/%m/%d %H:%M:%S")
        self.distribution_id = distribution_id
        self.tracker = tracker
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        state = getattr(self.tracker, "state", None)
        record.arms = f"{self.distribution_id} {state.name if state is not None else '-'}"
        text = super().format(record)
        # One event per line: a message or traceback never spans several lines.
        text = text.replace("\r", "").replace("\n", " | ")
        return self.redact(text)


def setup_logging(distribution_id: str, tracker, redact: Redactor, *, level: str = "info",
                  logfile: Optional[str] = None, syslog: bool = False,
                  syslog_socket: str = "/dev/log") -> logging.Handler:
    """Install the one armsd handler on the root logger; returns it."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    use_syslog = False
    if logfile:
        # Reopened when logrotate moves the file away.
        from logging.handlers import WatchedFileHandler
        handler = WatchedFileHandler(logfile, mode="a", encoding="utf-8")
    elif syslog and os.path.exists(syslog_socket):
        from logging.handlers import SysLogHandler   # only when used: pulls in pickle, queue
        handler = SysLogHandler(address=syslog_socket, facility=SysLogHandler.LOG_DAEMON)
        use_syslog = True
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ArmsdFormatter(distribution_id, tracker, redact, syslog=use_syslog))
    root.addHandler(handler)
    set_level(level)
    if syslog and not use_syslog and not logfile:
        logging.getLogger("libarms.daemon").warning("no syslog socket %s: logging to stderr",
                                                    syslog_socket)
    return handler


def set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
