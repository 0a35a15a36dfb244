"""Configuration of ``broute-bridge`` (INI file; see ``bridge/broute-bridge.conf.sample``)."""

from __future__ import annotations

import configparser
import dataclasses
import os
import stat
from typing import Optional

from .errors import ConfigError
from .session import SessionConfig


@dataclasses.dataclass
class BridgeConfig:
    session: SessionConfig
    device_id: str = "meter-1"
    discover: bool = False                 # find the port with pyudev when no port is set
    state_dir: str = "/var/lib/broute-bridge"
    poll_interval: float = 60.0            # E7/E8
    energy_interval: float = 600.0         # E0/E3
    backfill_max_hours: float = 24.0
    collector_url: Optional[str] = None
    collector_token: Optional[str] = dataclasses.field(default=None, repr=False)
    upload_batch: int = 100
    upload_backoff: tuple = (1.0, 2.0, 5.0, 15.0, 60.0, 300.0)
    control_socket: Optional[str] = None
    keep_uploaded_days: float = 7.0
    log_level: str = "INFO"

    @property
    def queue_path(self) -> str:
        return os.path.join(self.state_dir, "queue.sqlite")


def _floats(text: str) -> tuple:
    return tuple(float(x) for x in text.replace(",", " ").split())


def load(path: str) -> BridgeConfig:
    """Read and validate a config file; ConfigError with the file and key on any problem."""
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as fh:
            cp.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        mode = os.stat(path).st_mode
        secrets_exposed = bool(mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        secrets_exposed = False

    def get(section, key, default=None, conv=str):
        if not cp.has_option(section, key):
            return default
        raw = cp.get(section, key).strip()
        try:
            return conv(raw)
        except ValueError as exc:
            raise ConfigError(f"{path}: [{section}] {key} = {raw!r}: {exc}") from None

    def boolean(text):
        if text.lower() in ("1", "yes", "true", "on"):
            return True
        if text.lower() in ("0", "no", "false", "off"):
            return False
        raise ValueError("expected yes or no")

    rbid = get("broute", "id", "")
    password = get("broute", "password", "")
    if not rbid or not password:
        raise ConfigError(f"{path}: [broute] id and password are required")
    s = SessionConfig(
        port=get("serial", "port", ""),
        baudrate=get("serial", "baudrate", 115200, int),
        family=get("serial", "family", "auto"),
        drain_time=get("serial", "drain_time", 1.5, float),
        command_timeout=get("serial", "command_timeout", 5.0, float),
        output_mode=get("serial", "output_mode", "hex"),
        reset_on_start=get("serial", "reset_on_start", True, boolean),
        rbid=rbid,
        password=password,
        scan_durations=tuple(int(x) for x in _floats(get("broute", "scan_durations", "6 7 8"))),
        join_timeout=get("broute", "join_timeout", 60.0, float),
        reauth_timeout=get("broute", "reauth_timeout", 30.0, float),
        request_timeout=get("broute", "request_timeout", 20.0, float),
        request_retries=get("broute", "request_retries", 3, int),
        retry_gap=get("broute", "retry_gap", 5.0, float),
        min_request_gap=get("broute", "min_request_gap", 5.0, float),
        failures_before_rejoin=get("broute", "failures_before_rejoin", 3, int),
        backoff=_floats(get("broute", "backoff", "10 30 60 300 600")),
        instance_list_wait=get("broute", "instance_list_wait", 5.0, float),
    )
    cfg = BridgeConfig(
        session=s,
        device_id=get("bridge", "device_id", "meter-1"),
        discover=get("serial", "discover", not s.port, boolean),
        state_dir=get("bridge", "state_dir", "/var/lib/broute-bridge"),
        poll_interval=get("poll", "interval", 60.0, float),
        energy_interval=get("poll", "energy_interval", 600.0, float),
        backfill_max_hours=get("poll", "backfill_max_hours", 24.0, float),
        collector_url=get("upload", "url", None),
        collector_token=get("upload", "token", None),
        upload_batch=get("upload", "batch", 100, int),
        upload_backoff=_floats(get("upload", "backoff", "1 2 5 15 60 300")),
        control_socket=get("bridge", "control_socket", None),
        keep_uploaded_days=get("bridge", "keep_uploaded_days", 7.0, float),
        log_level=get("bridge", "log_level", "INFO").upper(),
    )
    s.pan_cache = os.path.join(cfg.state_dir, "pan.json")
    try:
        s.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if cfg.poll_interval <= 0 or cfg.energy_interval <= 0:
        raise ConfigError(f"{path}: [poll] intervals must be positive")
    if not s.port and not cfg.discover:
        raise ConfigError(f"{path}: set [serial] port, or discover = yes")
    cfg.secrets_exposed = secrets_exposed
    return cfg
