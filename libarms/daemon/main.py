"""armsd: the ARMS agent daemon of a gateway, answering the server through hook scripts.

Flow (as IIJ armsd 0.9.0, ``spec/arms-agent.md`` §5.1): read the config, restore the LS-skip
state, ``Agent.pull()`` (two-stage provisioning), save the state, run ``script-post-pull``,
``Agent.push_method_query()``, ``Agent.run()`` (push wait: tunnel or https-simple, heartbeats).
When the agent asks to pull again, stop the modules and pull again; any other end leaves armsd
with one of the exit codes below.

Exit codes (armsd 0.9.0 always exited 0 after its reboot script; ours tell a supervisor why):

====  ==========================================================================================
0     stopped by SIGTERM or SIGINT (tunnels closed, heartbeats stopped, state saved); ``-V``/``-h``
1     bad config file or option value, or a required file cannot be read (message on stderr)
2     bad command line (argparse)
3     the LS/RS told this device to stop using ARMS (``ARMS_EDONTRETRY``): do not restart
4     reboot requested (by the RS, by ``script-post-pull``, or result 503); ``script-reboot`` ran
5     boot fail: pull or push ended with an error (timeout, retries exhausted, a callback
      failed...); ``script-reboot`` ran; restart after a pause
6     ``--exit-on-pull``: the RS asked for a new pull; restart armsd to pull
====  ==========================================================================================

Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the config file (a bad new file is logged
and the running config kept; ``distribution-id`` and paths need a restart).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from .. import LIBARMS_COMPAT_VERSION, __version__, _record
from ..errors import ArmsError, ConfigError, Err
from ..states import State
from .app import ArmsdCallbacks, StateTracker
from .config import DaemonConfig, load_config
from .hooks import HookRunner, Redactor
from .logs import set_level, setup_logging
from .modules import ModuleStore
from .statefile import PidFile, StateCache

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

log = logging.getLogger("libarms.daemon")

DEFAULT_CONFIG = "/etc/armsd/armsd.conf"
DESCRIPTION = "armsd"

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_DONTRETRY = 3
EXIT_REBOOT = 4
EXIT_BOOTFAIL = 5
EXIT_PULL = 6


class _Stop(BaseException):
    """Raised from the signal handler to leave an agent call that cannot be stopped otherwise."""


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, told the terminal width: by itself it imports shutil (with bz2 and
    lzma, ~0.5 MiB for the daemon's life) just to read it. Same rule: $COLUMNS, the terminal,
    else 80 columns."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.HelpFormatter(prog, width=max(columns, 20) - 2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="armsd", formatter_class=_help_formatter,
        description="ARMS (SMF/SACM) agent daemon: provisions this device from the LS/RS, keeps "
                    "the push connection and heartbeats, and runs hook scripts for every request "
                    "(see the sample config for the hooks' arguments and exit codes).",
        epilog="Exit codes: 0 stopped by signal, 1 config error, 2 usage, 3 server said stop "
               "(do not restart), 4 reboot requested, 5 boot fail (restart later), "
               "6 pull again (--exit-on-pull).")
    p.add_argument("-f", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("-i", "--distribution-id", metavar="ID",
                   help="Distribution ID, overrides the config file's distribution-id")
    p.add_argument("-b", "--work-dir", metavar="DIR",
                   help="work directory for module configs (overrides path-work-dir)")
    p.add_argument("-p", "--port", type=int, metavar="PORT",
                   help="https-simple push listening port (default: push-port, else 10443)")
    p.add_argument("-l", "--logfile", metavar="FILE", help="log to this file (appended)")
    p.add_argument("--syslog", action="store_true",
                   help="log to syslog (facility daemon); the default once daemonised")
    p.add_argument("--syslog-socket", default="/dev/log", metavar="PATH",
                   help="syslog socket (default /dev/log)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-D", "--foreground", action="store_true",
                   help="stay in the foreground (the default; kept for armsd compatibility)")
    p.add_argument("-d", action="store_true", help="deprecated armsd option: -D -v")
    p.add_argument("--daemon", action="store_true",
                   help="detach (double fork) once the config is read, for busybox/sysv init; "
                        "logs then go to syslog (give -l FILE on a box without syslogd)")
    p.add_argument("-w", dest="wait_daemon", action="store_true",
                   help="run the pull in the foreground and detach only once it and the push "
                        "method query succeeded (an init script then waits for provisioning)")
    p.add_argument("--pidfile", metavar="FILE",
                   help="write the pid here (default with --daemon: path-pid)")
    p.add_argument("--state-file", metavar="FILE", help="overrides path-state-cache")
    p.add_argument("--exit-on-pull", action="store_true",
                   help="exit 6 when the RS asks for a new pull instead of pulling in-process")
    p.add_argument("-H", "--hb-debug", action="store_true",
                   help="print heartbeat statistics every 5 s and send nothing (debug)")
    p.add_argument("--hb-debug-count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("-t", "--check", action="store_true",
                   help="check the config file (keys, values, that hooks and files exist and "
                        "hooks are executable), print the problems and exit 0 (fine) or 1")
    p.add_argument("-V", "--version", action="store_true", help="print versions and exit")
    return p


def _preload_push_phase() -> Optional[threading.Thread]:
    """Import the push phase's modules (``libarms.push`` with the tunnel and https-simple
    transports and the push protocol: a good part of the launch time) on a short-lived thread
    while the pull waits on the network. Joined before the push
    method query; a failed import is left for the real import to report."""
    if "libarms.push" in sys.modules:
        return None

    def work():
        try:
            import libarms.push  # noqa: F401
        except Exception as e:    # reported again, with its traceback, where it is needed
            log.debug("push modules not preloaded: %s", e)

    th = threading.Thread(target=work, name="armsd-preload", daemon=True)
    th.start()
    return th


class Armsd:
    def __init__(self, cfg: DaemonConfig, args: argparse.Namespace):
        self.args = args
        self.cfg = self._apply_args(cfg)
        self.redact = Redactor(self.cfg.secrets())
        self.tracker = StateTracker()
        self.runner = HookRunner(self.cfg.distribution_id, self.cfg.timeout,
                                 self.cfg.timeout_kill, self.redact,
                                 extra_env={"ARMSD_WORK_DIR": self.cfg.path_work_dir})
        self.store = ModuleStore(self.cfg.path_work_dir)
        self.callbacks = ArmsdCallbacks(self.cfg, self.runner, self.store, self.tracker,
                                        self.redact)
        self.state_cache = StateCache(self.cfg.path_state_cache)
        self.pidfile: Optional[PidFile] = None
        self.agent = None
        self.stop_signal: Optional[int] = None
        self._in_agent = ""       # "pull", "query", "run" while inside that agent call
        self._daemonized = bool(args.daemon)
        self.callbacks.after_hook = self._after_hook

    def _apply_args(self, cfg: DaemonConfig) -> DaemonConfig:
        a = self.args
        changes = {}
        if a.work_dir:
            changes["path_work_dir"] = os.path.abspath(a.work_dir)
        if a.port is not None:
            changes["push_port"] = a.port
        if a.state_file:
            changes["path_state_cache"] = os.path.abspath(a.state_file)
        if a.verbose or a.d:
            changes["log_level"] = "debug"
        return _record.replace(cfg, **changes) if changes else cfg

    # -- signals -----------------------------------------------------------------------------

    def _on_stop(self, signum, frame) -> None:
        first = self.stop_signal is None
        self.stop_signal = signum
        self.callbacks.stopping = True
        if first:
            log.info("%s received: stopping", signal.Signals(signum).name)
        if self._in_agent == "run" and self._stop_push_loop():
            return      # Agent.run() returns soon: tunnels closed, heartbeat stopped
        if self._in_agent and not self.runner.busy:
            raise _Stop()
        # A hook is running on this thread: it ends (bounded by its timeout), then _after_hook
        # raises _Stop. Outside agent calls the next _call raises it.

    def _stop_push_loop(self) -> bool:
        """Ask the push loop to end, thread-safely (``Agent.stop()``); False when no agent."""
        if self.agent is None:
            return False
        try:
            self.agent.stop()
            return True
        except Exception as e:
            log.warning("Agent.stop() failed: %s", e)
            return False

    def _after_hook(self) -> None:
        """A stop signal that arrived while a hook ran on the main thread (pull phase) leaves
        the agent now. Hooks on the agent's callback thread (push phase) never raise here."""
        if self.stop_signal is not None and self._in_agent in ("pull", "query") \
                and threading.current_thread() is threading.main_thread():
            raise _Stop()

    def _on_hup(self, signum, frame) -> None:
        log.info("sighup received: reload configuration")
        try:
            new = self._apply_args(load_config(self.args.config, self.args.distribution_id))
        except ConfigError as e:
            log.error("reload failed, keeping the running configuration: %s", e)
            return
        for w in new.warnings:
            log.warning("%s", w)
        for field in ("distribution_id", "path_work_dir", "path_state_cache", "path_pid"):
            if getattr(new, field) != getattr(self.cfg, field):
                log.warning("%s changed in the config file: takes effect after a restart",
                            field.replace("_", "-"))
                new = _record.replace(new, **{field: getattr(self.cfg, field)})
        self.redact.add(*new.secrets())
        self.cfg = new
        self.callbacks.cfg = new
        set_level(new.log_level)
        self._set_app_event_interval()
        log.info("configuration reloaded from %s", self.args.config)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    # -- agent calls -------------------------------------------------------------------------

    def _call(self, phase: str, fn, *a, **kw):
        """Call into the agent (``phase`` pull, query or run) so that a stop signal can end it."""
        if self.stop_signal is not None:
            raise _Stop()
        self._in_agent = phase
        try:
            return fn(*a, **kw)
        finally:
            self._in_agent = ""

    def _make_agent(self):
        cfg = self.cfg
        if not cfg.path_root_ca:
            raise ConfigError(
                f"{cfg.source}: path-root-ca is not set: give the PEM file of the ARMS Root CA "
                "(the trust anchor of the LS; IIJ's armsd has it compiled in, this one does not)")
        from .. import Agent  # imported here: the daemon's own start-up stays light
        try:
            agent = Agent(cfg.distribution_id, self.callbacks,
                          time_floor_path=os.path.join(cfg.path_work_dir, "time-floor"))
        except TypeError:   # an agent without the time floor option
            agent = Agent(cfg.distribution_id, self.callbacks)
        self.callbacks.agent = agent
        if cfg.path_iconfig:
            agent.load_config(_read_text(cfg.path_iconfig, "path-iconfig"))
        agent.register_cert(_read_text(cfg.path_root_ca, "path-root-ca"))
        agent.register_authkey(cfg.ls_sa_key)
        agent.register_description(DESCRIPTION, __version__)
        # Refuse a proxy URL the agent cannot use now, not in the middle of a pull.
        for key, url in (("https-proxy-url-ls", cfg.https_proxy_url_ls),
                         ("https-proxy-url-rs", cfg.https_proxy_url_rs),
                         ("https-proxy-url", cfg.https_proxy_url)):
            if url:
                try:
                    agent.set_https_proxy(url)
                except ArmsError as e:
                    raise ConfigError(f"{cfg.source}: {key}: {e}") from None
        agent.set_https_proxy(cfg.https_proxy_url or None)
        return agent

    def _set_app_event_interval(self) -> None:
        """``app-event-interval`` for the push loop (``Agent.set_app_event_interval``)."""
        if self.agent is None or not self.cfg.script("script-app-event"):
            return
        seconds = self.cfg.app_event_interval
        try:
            self.agent.set_app_event_interval(seconds)
        except ArmsError as e:
            log.warning("app-event-interval %s not applied: %s", seconds, e)

    # -- main flow ---------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        log.info("armsd version %s, with libarms %s (compatible %s), distribution id %s",
                 __version__, __version__, LIBARMS_COMPAT_VERSION, cfg.distribution_id)
        for w in cfg.warnings:
            log.warning("%s", w)
        os.environ["ARMS_DISTRIBUTION_ID"] = cfg.distribution_id
        self._install_signals()
        try:
            self.store.prepare()
        except OSError as e:
            log.error("work directory %s unusable: %s (set path-work-dir or -b)",
                      cfg.path_work_dir, e)
            return EXIT_CONFIG
        try:
            self.agent = self._make_agent()
        except (ConfigError, ArmsError) as e:
            log.error("cannot initialise the agent: %s", e)
            return EXIT_CONFIG
        blob = self.state_cache.load()
        if blob is not None:
            try:
                self.agent.restore_state(blob)
                log.info("state restored from %s: the LS is skipped", cfg.path_state_cache)
            except Exception as e:
                log.warning("state cache %s not usable (%s): pulling from the LS",
                            cfg.path_state_cache, e)
        try:
            return self._loop()
        except _Stop:
            return self._shutdown()

    def _loop(self) -> int:
        for _ in range(1_000_000):            # one pass per pull; EPULL comes back here
            result = self._one_cycle()
            if result == Err.EPULL:
                log.info("pull requested: stopping the modules and pulling again")
                self._stop_modules()
                if self.args.exit_on_pull:
                    return self._finish(EXIT_PULL, reboot_script=False)
                continue
            return self._end_with(result)
        return self._end_with(Err.EFATAL)

    def _one_cycle(self) -> int:
        """pull → save state → post-pull → method query → run; returns the agent's result."""
        agent = self.agent
        self.callbacks.begin_pull()
        preload = _preload_push_phase()
        try:
            self._call("pull", agent.pull, timeout=self.cfg.pull_timeout or 21600, fragment=0,
                       lines=list(self.cfg.ls_lines))
        except ArmsError as e:
            log.error("pull failed: %s", e)
            return int(e.code)
        except Exception as e:   # an agent bug must not kill armsd without its exit path
            log.exception("pull raised %s", e)
            return int(Err.EFATAL)
        log.info("pull done")
        self._save_state()
        self.callbacks.prune_after_pull()
        res = self.callbacks.run_hook("script-post-pull")
        if res is not None and not res.ok:
            log.error("script-post-pull %s: taking the reboot path", res.describe())
            return int(Err.EREBOOT)
        if preload is not None:
            preload.join(30)      # no fork (-w) and no second importer while it still runs
        try:
            self._call("query", agent.push_method_query)
        except ArmsError as e:
            log.error("push method query failed: %s", e)
            return int(e.code)
        except Exception as e:
            log.exception("push method query raised %s", e)
            return int(Err.EFATAL)
        if self.args.wait_daemon and not self._daemonized:
            self._late_daemonize()
        self._set_app_event_interval()
        try:
            result = self._call("run", agent.run, port=self.cfg.push_port, fragment=0)
        except ArmsError as e:
            result = e.code
        except Exception as e:
            log.exception("push loop raised %s", e)
            result = Err.EFATAL
        if self.stop_signal is not None:
            raise _Stop()
        try:
            result = Err(int(result))
        except ValueError:
            pass
        log.info("push loop ended: %s", getattr(result, "name", result))
        return result

    def _late_daemonize(self) -> None:
        """``-w``: detach now that the device is provisioned; the foreground process exits 0."""
        self.callbacks.flush_state_hooks()
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()
                  and t.name != "armsd-state-hook"]
        if others:
            log.debug("threads not carried into the daemon: %s", ", ".join(others))
        log.info("provisioned: detaching (-w)")
        ready = daemonize()
        self._daemonized = True
        self.callbacks.reset_after_fork()
        if self.pidfile is not None:
            self.pidfile.write(force=True)
        os.write(ready, b"1")
        os.close(ready)
        log.info("running detached as pid %d", os.getpid())

    def _end_with(self, result) -> int:
        try:
            result = Err(int(result))
        except ValueError:
            pass
        if result in (0, Err.EREBOOT):
            log.info("reboot requested. exit.")
            self._stop_modules()
            return self._finish(EXIT_REBOOT, reboot_script=True)
        if result == Err.EDONTRETRY:
            log.error("LS/RS denied pull access. exit.")
            self._stop_modules()
            return self._finish(EXIT_DONTRETRY, reboot_script=False)
        name = getattr(result, "name", str(result))
        log.error("boot fail: %s (level %d, type %d). exit.", name, (int(result) >> 8) & 0xFF,
                  int(result) & 0xFF)
        self._stop_modules()
        return self._finish(EXIT_BOOTFAIL, reboot_script=True)

    def _stop_modules(self) -> None:
        for mid in self.store.module_ids():
            self.callbacks.stop_module(mid)

    def _save_state(self) -> None:
        try:
            blob = self.agent.dump_state()
        except Exception as e:
            log.error("cannot dump the agent state: %s", e)
            return
        if self.state_cache.save(bytes(blob)):
            log.info("state saved to %s", self.cfg.path_state_cache)

    def _end_agent(self) -> None:
        self.callbacks.stopping = True
        try:
            if self.agent is not None:
                self.agent.end()
        except Exception as e:
            log.warning("agent end: %s", e)

    def _finish(self, code: int, reboot_script: bool) -> int:
        self._end_agent()
        self.callbacks.flush_state_hooks()
        if reboot_script:
            res = self.callbacks.run_hook("script-reboot")
            if res is not None:
                log.info("script-reboot %s", res.describe())
        log.info("exit %d", code)
        return code

    def _shutdown(self) -> int:
        """SIGTERM/SIGINT: leave the agent call, save the state, end the agent, exit 0."""
        self.callbacks.stopping = True
        if self.agent is not None and self.tracker.state not in (State.INITIAL, State.LSPULL,
                                                                   State.RSPULL, State.BOOT_FAIL):
            self._save_state()
        self._end_agent()
        if not self.runner.wait_idle(0):
            # A hook started by the push loop's callback thread is still running (applying a
            # config, say): let it finish; its own timeout bounds the wait.
            log.info("waiting for the running hook to finish")
            self.runner.wait_idle(self.cfg.timeout + self.cfg.timeout_kill + 5)
        self.callbacks.flush_state_hooks()
        log.info("stopped by %s", signal.Signals(self.stop_signal).name
                 if self.stop_signal else "request")
        return EXIT_OK


def _read_text(path: str, key: str) -> str:
    try:
        with open(path, "r", encoding="ascii", errors="strict") as f:
            return f.read(1 << 20)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{key} {path}: {getattr(e, 'strerror', None) or e}") from None


def daemonize(ready_timeout: float = 30.0):
    """Double fork; the original process exits 0 once the child reports it is running."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        import select
        ok, _, _ = select.select([r], [], [], ready_timeout)
        data = os.read(r, 1) if ok else b""
        os._exit(0 if data == b"1" else 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return w


def check_config(cfg: DaemonConfig) -> int:
    """``-t``: report what would stop or hamper armsd with this config; 0 = nothing found."""
    problems = list(cfg.warnings)
    if not cfg.path_root_ca:
        problems.append("path-root-ca is not set (the ARMS Root CA PEM file is required)")
    for key, path in (("path-root-ca", cfg.path_root_ca), ("path-iconfig", cfg.path_iconfig)):
        if path and not os.access(path, os.R_OK):
            problems.append(f"{key} {path}: not readable")
    for key, path in sorted(cfg.scripts.items()):
        if not os.path.isfile(path):
            problems.append(f"{key} {path}: no such file")
        elif not os.access(path, os.X_OK):
            problems.append(f"{key} {path}: not executable")
    for path in cfg.hb_disk_usage:
        if not os.path.exists(path):
            problems.append(f"hb-disk-usage {path}: no such path")
    for line in problems:
        print(f"armsd: {line}")
    if not problems:
        print(f"armsd: {cfg.source}: fine ({len(cfg.scripts)} hook(s), distribution id "
              f"{cfg.distribution_id})")
    return EXIT_CONFIG if problems else EXIT_OK


def heartbeat_debug(cfg: DaemonConfig, count: int = 0) -> int:
    """``-H``: collect the statistics every 5 s and print the setter calls; send nothing."""
    from .app import ArmsdCallbacks as _CB

    class Printer:
        def __getattr__(self, name):
            def setter(*a):
                print(f"{name}{a}", flush=True)
            return setter

    cb = _CB(cfg, HookRunner(cfg.distribution_id, cfg.timeout, cfg.timeout_kill),
             ModuleStore(cfg.path_work_dir))
    try:
        for n in range(1, 10 ** 9):       # about 160 years at one sample per 5 s
            print(f"--- {time.strftime('%Y/%m/%d %H:%M:%S')}", flush=True)
            cb.hb_store_statistics(Printer())
            if count and n >= count:
                return EXIT_OK
            time.sleep(5 if not count else 0.2)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"armsd version {__version__}, with libarms {__version__} "
              f"(wire-compatible with libarms {LIBARMS_COMPAT_VERSION})")
        return EXIT_OK
    try:
        cfg = load_config(args.config, args.distribution_id)
    except ConfigError as e:
        print(f"armsd: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        return check_config(cfg)
    if args.hb_debug:
        return heartbeat_debug(cfg, args.hb_debug_count)
    daemon = Armsd(cfg, args)
    ready_fd = None
    if args.daemon:
        ready_fd = daemonize()
    setup_logging(cfg.distribution_id, daemon.tracker, daemon.redact,
                  level=daemon.cfg.log_level, logfile=args.logfile,
                  syslog=args.syslog or ((args.daemon or args.wait_daemon) and not args.logfile),
                  syslog_socket=args.syslog_socket)
    # Handlers first: the pidfile and the ready byte tell an init script it may signal us, and a
    # SIGTERM that came before them would kill armsd without its exit path (pidfile left behind).
    daemon._install_signals()
    pidpath = args.pidfile or (cfg.path_pid if args.daemon or args.wait_daemon else None)
    if pidpath:
        daemon.pidfile = PidFile(os.path.abspath(pidpath))
        try:
            daemon.pidfile.write()
        except (ConfigError, OSError) as e:
            log.error("%s", e)
            return EXIT_CONFIG
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    try:
        return daemon.run()
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_CONFIG
    except Exception as e:      # last resort: one log line and the "boot fail" exit code
        log.exception("armsd failed unexpectedly: %s", e)
        return EXIT_BOOTFAIL
    finally:
        if daemon.pidfile is not None:
            daemon.pidfile.remove()
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
