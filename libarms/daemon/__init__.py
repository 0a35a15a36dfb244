"""armsd: the ARMS agent daemon of a gateway (``spec/arms-agent.md`` §5).

* :mod:`.main`       — ``armsd`` command line, the pull / push loop, signals, exit codes
* :mod:`.config`     — the config file (armsd 0.9.0 keys, our additions documented)
* :mod:`.app`        — every libarms callback mapped onto a hook script or a built-in
* :mod:`.hooks`      — running hooks: arguments, environment, timeouts, stderr, secrets
* :mod:`.modules`    — running / candidate / backup / startup module configs, swapped atomically
* :mod:`.statefile`  — atomic writes, the LS-skip state cache, the pid file
* :mod:`.stats`      — heartbeat statistics of a Linux host from /proc and statvfs
* :mod:`.logs`       — one event per line with distribution id and state, no secrets

``data/armsd.conf.sample`` documents every key and every hook's arguments and exit codes.
The daemon uses only the public API (``libarms.Agent``, ``libarms.Callbacks``).
"""
