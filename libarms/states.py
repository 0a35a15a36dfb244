"""ARMS agent states and the transitions between them, as data.

Rules of this file (h11 style): the State enum keeps libarms 5.33's numbers
(``spec/arms-agent.md`` §2.2); every transition the agent may make is one row of
:data:`TRANSITIONS`, a literal dict ``{state: {event: next_state}}`` that a reader can check
against the spec on one screen. The agent never assigns a state directly: it fires an
:class:`Event` and :func:`next_state` looks the row up; a missing row is a bug in the agent
(``RuntimeError``), never a peer's fault.

Theory of operation, pull phase (§2.3):

* ``Agent.pull()`` fires LS_START (no cached RS endpoint) or RS_START (LS skip after
  ``restore_state``) from any resting state (INITIAL, PULLDONE, BOOT_FAIL, PUSH_REBOOT, ...).
* LS answer accepted -> LS_DONE -> RSPULL. RS answer accepted -> RS_DONE -> PULLDONE.
* RS phase exhausted (retries, 502, no line) -> RS_FALLBACK -> LSPULL (no count limit; only
  the total timeout ends the loop).
* Any error that ends ``pull()`` -> FAIL -> BOOT_FAIL.

Push phase (§2.7, ``libarms/push.py``):

* A confirmation run starts (https-simple confirmation-start sent, or a tunnel sends its
  push-confirmation-start) -> CONFIRM_START -> PUSH_SENDREADY; a re-confirmation from push
  wait keeps PUSH_WAIT (push wait is sticky, §1.5 of the wire spec).
* push-confirmation-done answered -> CONFIRMED -> PUSH_WAIT.
* A confirmation-start answer that stops the loop (2xx/5xx/507) -> FAIL -> BOOT_FAIL.
* The push scheduler ends (every round of ``Agent.run()``: reboot, pull again, don't retry,
  no method left, and also an EPUSH re-confirmation or a configure in https-simple mode)
  -> LOOP_END -> PUSH_REBOOT. So a re-confirmation reads PUSH_WAIT -> PUSH_REBOOT ->
  PUSH_SENDREADY -> PUSH_WAIT (§2.2); after a configure in https-tunnel mode the tunnels
  re-confirm on their connections inside the round and the state stays PUSH_WAIT.
* ``Agent.run()`` returning early (argument or method errors, no round ran) leaves the state.
"""

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


class Event(enum.Enum):
    LS_START = "ls-start"          # pull() begins at the LS
    RS_START = "rs-start"          # pull() begins at the cached RS (LS skip)
    LS_DONE = "ls-done"            # rs-solicitation answered 1xx
    RS_DONE = "rs-done"            # config-solicitation answered 1xx and applied
    RS_FALLBACK = "rs-fallback"    # RS phase gave up: back to the LS
    FAIL = "fail"                  # pull() ends with an error (or a fatal push-side answer)
    CONFIRM_START = "confirm-start"  # a push confirmation run starts
    CONFIRMED = "confirmed"        # push-confirmation-done answered: pushes accepted
    LOOP_END = "loop-end"          # the event loop returns to the application


_PULL_START = {Event.LS_START: State.LSPULL, Event.RS_START: State.RSPULL}

TRANSITIONS: dict[State, dict[Event, State]] = {
    # -- pull phase ---------------------------------------------------------------------------
    State.INITIAL:        {**_PULL_START},
    State.LSPULL:         {Event.LS_DONE: State.RSPULL, Event.FAIL: State.BOOT_FAIL},
    State.RSPULL:         {Event.RS_DONE: State.PULLDONE, Event.RS_FALLBACK: State.LSPULL,
                           Event.FAIL: State.BOOT_FAIL},
    State.PULLDONE:       {**_PULL_START, Event.FAIL: State.BOOT_FAIL},
    State.BOOT_FAIL:      {**_PULL_START, Event.FAIL: State.BOOT_FAIL},
    State.PUSH_SENDREADY: {**_PULL_START, Event.FAIL: State.BOOT_FAIL},
    State.PUSH_WAIT:      {**_PULL_START},
    State.PUSH_REBOOT:    {**_PULL_START},
    # -- push phase (rows added by the push side) -----------------------------------------------
}

_PUSH_ROWS: dict[State, dict[Event, State]] = {
    State.PULLDONE:       {Event.CONFIRM_START: State.PUSH_SENDREADY, Event.LOOP_END: State.PUSH_REBOOT},
    State.PUSH_SENDREADY: {Event.CONFIRM_START: State.PUSH_SENDREADY, Event.CONFIRMED: State.PUSH_WAIT,
                           Event.LOOP_END: State.PUSH_REBOOT},
    State.PUSH_WAIT:      {Event.CONFIRM_START: State.PUSH_WAIT, Event.CONFIRMED: State.PUSH_WAIT,
                           Event.FAIL: State.BOOT_FAIL, Event.LOOP_END: State.PUSH_REBOOT},
    State.BOOT_FAIL:      {Event.CONFIRM_START: State.PUSH_SENDREADY, Event.LOOP_END: State.PUSH_REBOOT},
    State.PUSH_REBOOT:    {Event.CONFIRM_START: State.PUSH_SENDREADY, Event.LOOP_END: State.PUSH_REBOOT},
}
for _state, _rows in _PUSH_ROWS.items():
    TRANSITIONS.setdefault(_state, {}).update(_rows)


def next_state(state: State, event: Event) -> State:
    """The state ``event`` leads to from ``state``; RuntimeError when the table has no row."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise RuntimeError(f"no transition from {state.name} on {event.name}") from None
