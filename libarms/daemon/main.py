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
2     bad command line (usage and the problem on stderr)
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
from .modules import ModuleStore, flush_dirs
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


#: armsd's options: (short, long, dest, kind, metavar, help). ``kind`` is "flag", "str" or
#: "int"; help None hides the option. A table and :func:`parse_args` rather than argparse:
#: argparse (with gettext's catalog machinery and its formatter classes) stays resident
#: ~0.4 MiB for the daemon's life to parse a dozen options once.
OPTIONS = (
    ("h", "help", "help", "flag", None, "show this help message and exit"),
    ("f", "config", "config", "str", "FILE", f"config file (default {DEFAULT_CONFIG})"),
    ("i", "distribution-id", "distribution_id", "str", "ID",
     "Distribution ID, overrides the config file's distribution-id"),
    ("b", "work-dir", "work_dir", "str", "DIR",
     "work directory for module configs (overrides path-work-dir)"),
    ("p", "port", "port", "int", "PORT",
     "https-simple push listening port (default: push-port, else 10443)"),
    ("l", "logfile", "logfile", "str", "FILE", "log to this file (appended)"),
    (None, "syslog", "syslog", "flag", None,
     "log to syslog (facility daemon); the default once daemonised"),
    (None, "syslog-socket", "syslog_socket", "str", "PATH", "syslog socket (default /dev/log)"),
    ("v", "verbose", "verbose", "flag", None, "debug logging"),
    ("D", "foreground", "foreground", "flag", None,
     "stay in the foreground (the default; kept for armsd compatibility)"),
    ("d", None, "d", "flag", None, "deprecated armsd option: -D -v"),
    (None, "daemon", "daemon", "flag", None,
     "detach (double fork) once the config is read, for busybox/sysv init; logs then go to "
     "syslog (give -l FILE on a box without syslogd)"),
    ("w", None, "wait_daemon", "flag", None,
     "run the pull in the foreground and detach only once it and the push method query "
     "succeeded (an init script then waits for provisioning)"),
    (None, "pidfile", "pidfile", "str", "FILE",
     "write the pid here (default with --daemon: path-pid)"),
    (None, "state-file", "state_file", "str", "FILE", "overrides path-state-cache"),
    (None, "exit-on-pull", "exit_on_pull", "flag", None,
     "exit 6 when the RS asks for a new pull instead of pulling in-process"),
    ("H", "hb-debug", "hb_debug", "flag", None,
     "print heartbeat statistics every 5 s and send nothing (debug)"),
    (None, "hb-debug-count", "hb_debug_count", "int", "N", None),
    ("t", "check", "check", "flag", None,
     "check the config file (keys, values, that hooks and files exist and hooks are "
     "executable), print the problems and exit 0 (fine) or 1"),
    ("V", "version", "version", "flag", None, "print versions and exit"),
)
DEFAULTS = {"config": DEFAULT_CONFIG, "syslog_socket": "/dev/log", "hb_debug_count": 0}
DESCRIPTION_TEXT = (
    "ARMS (SMF/SACM) agent daemon: provisions this device from the LS/RS, keeps the push "
    "connection and heartbeats, and runs hook scripts for every request (see the sample config "
    "for the hooks' arguments and exit codes).")
EPILOG = ("Exit codes: 0 stopped by signal, 1 config error, 2 usage, 3 server said stop (do not "
          "restart), 4 reboot requested, 5 boot fail (restart later), 6 pull again "
          "(--exit-on-pull).")


class Options:
    """The parsed command line: one attribute per ``OPTIONS`` dest."""

    def __init__(self, **values):
        for _short, _long, dest, kind, _mv, _help in OPTIONS:
            setattr(self, dest, DEFAULTS.get(dest, False if kind == "flag" else None))
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "Options(%s)" % ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))


class UsageError(Exception):
    """A bad command line; ``main`` prints the usage and the message and exits 2."""


def _columns() -> int:
    """The help's width: $COLUMNS, the terminal, else 80 (as argparse, without shutil)."""
    try:
        return max(int(os.environ["COLUMNS"]), 20) - 2
    except (KeyError, ValueError):
        pass
    try:
        return max(os.get_terminal_size(sys.__stdout__.fileno()).columns, 20) - 2
    except (AttributeError, ValueError, OSError):
        return 78


def _names(short, long, metavar) -> str:
    arg = f" {metavar}" if metavar else ""
    names = ([f"-{short}{arg}"] if short else []) + ([f"--{long}{arg}"] if long else [])
    return ", ".join(names)


def usage(width: Optional[int] = None) -> str:
    import textwrap      # already loaded by traceback (logging): costs nothing
    width = width or _columns()
    parts = []
    for short, long, _dest, _kind, metavar, help_ in OPTIONS:
        if help_ is None:
            continue
        flag = f"-{short}" if short else f"--{long}"
        # a no-break space keeps "[--pidfile FILE]" on one line (textwrap splits on ASCII only)
        parts.append(f"[{flag}\xa0{metavar}]" if metavar else f"[{flag}]")
    return textwrap.fill(" ".join(parts), width, initial_indent="usage: armsd ",
                         subsequent_indent=" " * len("usage: armsd "),
                         break_long_words=False, break_on_hyphens=False).replace("\xa0", " ")


def help_text(width: Optional[int] = None) -> str:
    """The ``-h`` text: usage, description, one entry per option, the exit codes."""
    import textwrap
    width = width or _columns()
    col = min(24, max(width // 3, 10))
    out = [usage(width), "", textwrap.fill(DESCRIPTION_TEXT, width), "", "options:"]
    for short, long, _dest, _kind, metavar, help_ in OPTIONS:
        if help_ is None:
            continue
        names = "  " + _names(short, long, metavar)
        body = textwrap.wrap(help_, max(width - col, 11), break_on_hyphens=False)
        if len(names) <= col - 2:
            out.append(names.ljust(col) + body[0])
            body = body[1:]
        else:
            out.append(names)
        out.extend(" " * col + line for line in body)
    out += ["", textwrap.fill(EPILOG, width)]
    return "\n".join(out) + "\n"


def parse_args(argv) -> Options:
    """armsd's command line, GNU getopt rules: bundled short flags (``-vD``), ``-fFILE`` or
    ``-f FILE``, ``--config=FILE`` or ``--config FILE``, unambiguous long prefixes, options
    anywhere, ``--`` ends them. UsageError (getopt's wording) on anything else. Written out
    rather than with getopt, which keeps gettext and locale loaded (~0.1 MiB) for its
    messages."""
    shorts = {o[0]: o for o in OPTIONS if o[0]}
    longs = {o[1]: o for o in OPTIONS if o[1]}
    args, pairs, rest = list(argv), [], []
    i = 0
    while i < len(args):               # bounded: every pass consumes at least one argument
        a = args[i]
        i += 1
        if a == "--":
            rest += args[i:]
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            opt = longs.get(name)
            if opt is None:
                found = [n for n in longs if n.startswith(name)]
                if not found:
                    raise UsageError(f"option --{name} not recognized")
                if len(found) > 1:
                    raise UsageError(f"option --{name} not a unique prefix")
                opt = longs[found[0]]
            if opt[3] == "flag":
                if eq:
                    raise UsageError(f"option --{opt[1]} must not have an argument")
                pairs.append((opt, True))
                continue
            if not eq:
                if i >= len(args):
                    raise UsageError(f"option --{opt[1]} requires argument")
                value = args[i]
                i += 1
            pairs.append((opt, value))
        elif a.startswith("-") and a != "-":
            for j in range(1, len(a)):
                opt = shorts.get(a[j])
                if opt is None:
                    raise UsageError(f"option -{a[j]} not recognized")
                if opt[3] == "flag":
                    pairs.append((opt, True))
                    continue
                if j + 1 < len(a):
                    value = a[j + 1:]
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    raise UsageError(f"option -{a[j]} requires argument")
                pairs.append((opt, value))
                break
        else:
            rest.append(a)
    if rest:
        raise UsageError("unrecognized arguments: " + " ".join(rest))
    # values are checked in command-line order once the whole line parsed (as getopt users do)
    return Options(**{opt[2]: v if v is True else _option_value(opt, v) for opt, v in pairs})


def _option_value(opt, value: str):
    short, long, _dest, kind, _mv, _help = opt
    if kind != "int":
        return value
    try:
        return int(value)
    except ValueError:
        shown = "/".join(x for x in ((f"-{short}" if short else ""), (f"--{long}" if long else ""))
                         if x)
        raise UsageError(f"argument {shown}: invalid int value: {value!r}") from None


def _import_parser() -> None:
    """The XML parser side: the first server answer needs it; nothing parses before."""
    from ..protocol import xmlutil
    xmlutil.load_parser()


def _import_push_phase() -> None:
    """The push phase's modules (``libarms.push`` with the tunnel and https-simple transports
    and the push protocol: a good part of the launch time). A failed import is left for the
    real import to report."""
    try:
        import libarms.push  # noqa: F401
    except Exception as e:    # reported again, with its traceback, where it is needed
        log.debug("push modules not preloaded: %s", e)


def _import_all() -> None:
    _import_parser()
    _import_push_phase()


def _preload_push_phase(ls_first: bool = True) -> None:
    """Have what the main thread needs only once answers arrive imported while the pull's
    exchanges wait for their answers (``transport.https.while_waiting``): on the main thread,
    between sending a request and reading its answer. A pull that starts at the LS has two
    waits (LS, RS): the parser in the first, the push phase in the second; one that starts at
    the RS (state restored) has one, for both. (A preload thread started with the pull did
    the same work while the main thread was blocked, but each wake-up of the main thread then
    waited for the GIL, up to a switch interval, and the hand-overs cost CPU; on a one-core
    gateway a thread cannot overlap anything anyway.)"""
    if "libarms.push" in sys.modules:
        return
    from ..transport import https
    if ls_first:
        https.while_waiting(_import_parser)
        https.while_waiting(_import_push_phase)
    else:
        https.while_waiting(_import_all)


class Armsd:
    def __init__(self, cfg: DaemonConfig, args: Options):
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
                self._ls_skipped = True
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
        _preload_push_phase(ls_first=not getattr(self, "_ls_skipped", False))
        self.store.defer_dir_syncs()      # flushed with the state file (see ModuleStore)
        pulled = False
        try:
            try:
                self._call("pull", agent.pull, timeout=self.cfg.pull_timeout or 21600,
                           fragment=0, lines=list(self.cfg.ls_lines))
                pulled = True
            finally:
                dirs = self.store.end_deferral()
                if not pulled:
                    flush_dirs(dirs)
        except ArmsError as e:
            log.error("pull failed: %s", e)
            return int(e.code)
        except Exception as e:   # an agent bug must not kill armsd without its exit path
            log.exception("pull raised %s", e)
            return int(Err.EFATAL)
        log.info("pull done")
        # The state file is written on a thread while the push phase starts: its two fsyncs
        # (tens of ms on flash) are off the way to PUSH_WAIT. A crash before the write is
        # durable loses nothing that matters: the file then still holds the previous blob (or
        # none), atomic_write never leaves a half one, so the next start restores the previous
        # RS data (or none) and pulls - from that RS, falling back to the LS when it refuses, or
        # from the LS - and every pull brings everything again. The blob is taken here, on this
        # thread; later saves, the fork of -w and the exit wait for the write (in order).
        self._save_state(background=True, before=lambda: flush_dirs(dirs))
        self.callbacks.prune_after_pull()
        res = self.callbacks.run_hook("script-post-pull")
        if res is not None and not res.ok:
            log.error("script-post-pull %s: taking the reboot path", res.describe())
            return int(Err.EREBOOT)
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
        self.state_cache.wait()         # the writer thread would not follow into the child
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

    def _save_state(self, background: bool = False, before=None) -> None:
        try:
            blob = self.agent.dump_state()
        except Exception as e:
            log.error("cannot dump the agent state: %s", e)
            if before is not None:
                before()
            return
        if background:
            self.state_cache.save_in_background(bytes(blob), before=before)
        elif self.state_cache.save(bytes(blob)):
            log.info("state saved to %s", self.cfg.path_state_cache)

    def _end_agent(self) -> None:
        self.callbacks.stopping = True
        try:
            if self.agent is not None:
                self.agent.end()
        except Exception as e:
            log.warning("agent end: %s", e)

    def _finish(self, code: int, reboot_script: bool) -> int:
        self.state_cache.wait()
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
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        sys.stderr.write(f"{usage()}\narmsd: error: {e}\n")
        return EXIT_USAGE
    if args.help:
        sys.stdout.write(help_text())
        return EXIT_OK
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
        daemon.state_cache.wait()       # a background state write ends before the process
        if daemon.pidfile is not None:
            daemon.pidfile.remove()
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
