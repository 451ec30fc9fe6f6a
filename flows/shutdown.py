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
pending, and `exit_on_signal()` (the entry points' main) turns the re-sent signal into
`SystemExit(128 + signal)`, so that atexit stops the temporary server. Prefect's own handler is
left in place: a worker's cancellation still reaches the run as a cancellation.

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
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal

GRACE_S = 10.0  # time for Prefect to report the run as Crashed to a server that still answers
CHILD_GRACE_S = 4.0  # time for a stage's process group to end on SIGTERM before SIGKILL
_armed = threading.Event()


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
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None:  # the temporary server this process started, if any
        for server in list(server_module.SubprocessASGIServer._instances.values()):
            with contextlib.suppress(Exception):
                if server.server_process is not None:
                    server.server_process.terminate()
    os._exit(code)


def exit_on_signal() -> None:
    """For an entry point's main thread: SIGTERM ends the process with SystemExit(143), running
    finally blocks and atexit (Prefect restores this handler after reporting the run)."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
