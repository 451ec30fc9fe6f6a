"""Stop within seconds on SIGTERM (or Ctrl-C), saying what was interrupted and how to resume.

During a flow run Prefect owns SIGTERM: its handler raises `TerminationSignal` in the main
thread, the run is reported Crashed, then the signal is sent again to the handler that was there
before. Two things kept a stopped flow alive or left something behind:

- a signal to the whole process group (`timeout`, systemd, a terminal) also stops the temporary
  Prefect server, and reporting the crash to it was then retried for about two minutes;
- the re-sent SIGTERM met the default handler and killed the process before atexit could stop
  the temporary server, which outlived the flow.

So `on_signal(what)` (around each stage and the approval wait) logs one line naming what was
interrupted and arms a watchdog that ends the process `GRACE_S` seconds later whatever is still
pending, or as soon as the temporary server this process started has stopped and no stage's
process group is still being stopped (Ctrl-C in a terminal, or a signal to the group: nothing is
left to report to, and waiting out the grace helps nobody), and `exit_on_signal()` (the entry
points' main) turns the re-sent signal into `SystemExit(128 + signal)`, so that atexit stops
the temporary server. Prefect's own handler is left in place: a worker's cancellation still
reaches the run as a cancellation.

A stage runs in a child process group of its own (`dvc repro` and the stage's command under
it), which a signal to the flow process alone would not reach: `stop_child` passes the signal
on to that group and kills what is left of it after `CHILD_GRACE_S`, within the flow's grace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal

GRACE_S = 10.0  # time for Prefect to report the run as Crashed to a server that still answers
CHILD_GRACE_S = 4.0  # time for a stage's process group to end on SIGTERM before SIGKILL
_armed = threading.Event()
_children = 0  # stage process groups being stopped (`stop_child`)
_children_lock = threading.Lock()


def _advice(what: str) -> str:
    if what == "stage train":
        return (
            "train is not recorded in dvc.lock; run the flow (or `dvc repro`) again to resume "
            "training from the last checkpoint in models/checkpoints"
        )
    if what.startswith("stage "):
        return f"{what.removeprefix('stage ')} is not recorded in dvc.lock; the next run redoes it"
    return "nothing after it ran"


def _say(message: str) -> None:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().error(message)
    except MissingContextError:
        print(message, file=sys.stderr, flush=True)


def stopping(what: str, signum: int) -> None:
    """Announce the stop once and make sure the process ends within GRACE_S seconds."""
    if _armed.is_set():
        return
    _armed.set()
    name = signal.Signals(signum).name
    _say(f"{name}: stopping the flow run during {what}: {_advice(what)}")
    timer = threading.Timer(GRACE_S, _exit_now, args=(128 + signum,))
    timer.daemon = True
    timer.start()
    early = threading.Thread(target=_exit_when_alone, args=(128 + signum,), daemon=True)
    early.start()


def _own_servers() -> list:
    """The temporary Prefect servers this process started (none when it reports elsewhere)."""
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return []
    return [
        s for s in module.SubprocessASGIServer._instances.values() if s.server_process is not None
    ]


def _exit_when_alone(code: int, poll_s: float = 0.2) -> None:
    """End the process once its temporary server has stopped and no stage group is being
    stopped; returns when the watchdog is disarmed (tests) or there is no temporary server."""
    while _armed.is_set():
        servers = _own_servers()
        if not servers:
            return  # a server elsewhere may still take the report: the full grace applies
        with _children_lock:
            busy = _children > 0
        if not busy and all(s.server_process.poll() is not None for s in servers):
            print(
                "the temporary Prefect server has stopped too (the signal reached the process "
                "group): nothing left to report to, exiting now",
                file=sys.__stderr__,
                flush=True,
            )
            os._exit(code)
        time.sleep(poll_s)


@contextlib.contextmanager
def on_signal(what: str) -> Iterator[None]:
    try:
        yield
    except TerminationSignal as exc:
        stopping(what, exc.signal)
        raise
    except KeyboardInterrupt:
        stopping(what, signal.SIGINT)
        raise


def stop_child(process: subprocess.Popen, what: str, signum: int) -> None:
    """Announce the stop, pass `signum` on to the child's process group (started with
    start_new_session) and kill the group if it has not ended within CHILD_GRACE_S."""
    global _children
    with _children_lock:
        _children += 1
    try:
        stopping(what, signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=CHILD_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        with _children_lock:
            _children -= 1


def signal_of(exc: BaseException) -> int | None:
    """The signal an interruption stands for: Prefect's TerminationSignal or Ctrl-C."""
    if isinstance(exc, TerminationSignal):
        return exc.signal
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    return None


def _exit_now(code: int) -> None:
    print(
        f"still running {GRACE_S:.0f} s after the signal (reporting to a Prefect server that no "
        "longer answers?): exiting now",
        file=sys.__stderr__,
        flush=True,
    )
    for server in _own_servers():  # the temporary server this process started, if any
        with contextlib.suppress(Exception):
            server.server_process.terminate()
    os._exit(code)


def exit_on_signal() -> None:
    """For an entry point's main thread: SIGTERM ends the process with SystemExit(143), running
    finally blocks and atexit (Prefect restores this handler after reporting the run)."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
