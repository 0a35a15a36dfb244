"""A small device program for running the agent on a foreign CPU (qemu-user).

It uses only the public libarms API, as a gateway's own program would, and reports what happens
as JSON lines on stdout so that a test or a benchmark on the host can follow it:

    S=build/sysroot-armhf
    PYTHONPATH=build/stage-armhf qemu-arm -L $S $S/usr/bin/python3.11 \\
        scripts/cross/device_agent.py device.json

``device.json``: ``distribution_id``, ``ls_sa_key``, ``ca_pem`` (path of the ARMS root CA
file), ``initial_config`` (text), optional ``push_port`` (https-simple listener, 0 = libarms
default), ``pull_timeout`` (s), ``push`` (false: stop after the pull), ``agent_options`` (extra
keyword arguments for ``Agent``, e.g. short retry intervals), ``cpu_usage`` (heartbeat metric).

Events (one JSON object per line, ``t`` = seconds since the program started):
``start`` (machine, byte order, whether the C core loaded), ``state`` (old, new), ``config``
(module id, version, action, bytes), ``pulled``, ``md_command`` (module id, command),
``heartbeat_stats``, ``method_query`` (code), ``run_result`` (code) and ``error`` (message).
Logs of the agent go to stderr (``log_level`` in device.json, default INFO).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import threading
import time

T0 = time.monotonic()
_out = threading.Lock()   # callbacks may run on the agent's worker threads


def emit(event: str, **fields) -> None:
    fields.update(event=event, t=round(time.monotonic() - T0, 4))
    line = json.dumps(fields, sort_keys=True) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        conf = json.load(f)

    logging.basicConfig(level=conf.get("log_level", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import libarms
    from libarms import Agent, ArmsError, Callbacks, State

    try:
        import libarms._core  # noqa: F401
        core = True
    except ImportError:
        core = False
    emit("start", machine=platform.machine(), byteorder=sys.byteorder, core=core,
         python=platform.python_version(), libarms=libarms.__version__, pid=os.getpid())

    class DeviceCallbacks(Callbacks):
        def state(self, old, new):
            emit("state", old=State(old).name, new=State(new).name)

        def config(self, module_id, version, info, action, data, flags):
            emit("config", module_id=module_id, version=version, action=int(action),
                 size=len(data), data=data.decode("ascii", "replace")[:200])

        def md_command(self, module_id, command):
            text = command.decode("ascii", "replace")
            emit("md_command", module_id=module_id, command=text)
            return f"{platform.machine()} ran: {text}"

        def hb_store_statistics(self, hb):
            hb.set_cpu_usage(0, int(conf.get("cpu_usage", 42)))
            hb.set_mem_usage(0, 1 << 20, 3 << 33)   # > 32 bits: 64-bit fields on a 32-bit CPU
            emit("heartbeat_stats")

    agent = Agent(conf["distribution_id"], DeviceCallbacks(), **conf.get("agent_options", {}))
    with open(conf["ca_pem"], encoding="ascii") as f:
        agent.register_cert(f.read())
    agent.register_authkey(conf["ls_sa_key"])
    agent.load_config(conf["initial_config"])
    try:
        agent.pull(timeout=int(conf.get("pull_timeout", 120)))
        emit("pulled")
        if not conf.get("push", True):
            return 0
        code = agent.push_method_query()
        emit("method_query", code=int(code or 0))
        if code:
            return 1
        code = agent.run(port=int(conf.get("push_port", 0)))
        emit("run_result", code=int(code or 0))
        return 0
    except ArmsError as e:
        emit("error", code=int(e.code), message=str(e))
        return 1
    finally:
        agent.end()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
