"""Background processes of the stack: free ports, start with a log, wait until healthy, stop by
pid (and only a pid whose command line still names this stack's folder)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from team.errors import StackError


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports free right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(cmd: list[str], log: Path, environ: dict[str, str], cwd: Path) -> int:
    """Start `cmd` in its own session (so `stop` reaches its children), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line or working directory holds `marker` (a
    recycled pid of someone else's process is never ours)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        cwd = os.readlink(f"/proc/{pid}/cwd")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (marker in cmdline or cwd.startswith(marker))


def stop(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 30) -> bool:
    """Stop our process `pid` (and its process group when it leads one); False if not ours."""
    if not alive(pid, marker):
        return False
    group = os.getpgid(pid) == pid
    send = (lambda s: os.killpg(pid, s)) if group else (lambda s: os.kill(pid, s))
    with contextlib.suppress(ProcessLookupError):
        send(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, marker):
        time.sleep(0.2)
    if alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
        time.sleep(0.5)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it was our child
    return True


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


POLL_S = 0.1  # each check is a refused connect until the server listens: cheap


def wait(check: Callable[[], bool], what: str, log: Path, timeout: float, pid: int) -> None:
    """Until `check()` holds; an error (with the log's tail) when `pid` exits or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if _exited(pid):
            raise StackError(f"{what} exited (log: {log})\n{_tail(log)}")
        time.sleep(POLL_S)
    raise StackError(f"{what} not ready after {timeout:.0f} s (log: {log})\n{_tail(log)}")


def _exited(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
        return done == pid
    except ChildProcessError:  # started by an earlier `up`
        return not Path(f"/proc/{pid}").exists()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""
