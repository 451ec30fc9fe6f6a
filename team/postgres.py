"""PostgreSQL: a cluster of the stack's own (initdb once), started with pg_ctl on a loopback
port, one role and database per server (MLflow's store, MLflow's accounts, Prefect).

initdb and postgres refuse to run as root: as root they run as the `postgres` user, which must
own the data folder and be able to reach it."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from team import proc
from team.errors import StackError

DATABASES = {"mlflow": ("mlflow", "mlflow_auth"), "prefect": ("prefect",)}


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (TEAM_PG_BIN overrides)."""
    if os.environ.get("TEAM_PG_BIN"):
        return Path(os.environ["TEAM_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise StackError("PostgreSQL not found: install it (Debian: apt-get install postgresql)")


def _version(path: str) -> int:
    return int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    out = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
    if out.returncode:
        raise StackError(f"PostgreSQL {what} failed: {(out.stderr or out.stdout).strip()[-800:]}")


def init(folder: Path, password: str) -> None:
    """initdb a cluster in `folder/data` (superuser `postgres`, password logins only)."""
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    pwfile = folder / ".pw"
    pwfile.write_text(password + "\n")
    os.chmod(folder, 0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
    try:
        initdb = str(bin_dir() / "initdb")
        args = ["-D", str(data), "-U", "postgres", "-A", "scram-sha-256", f"--pwfile={pwfile}"]
        _run([initdb, *args, "-E", "UTF8", "--locale=C.UTF-8"], f"initdb in {data}")
    finally:
        pwfile.unlink(missing_ok=True)


def start(folder: Path, port: int) -> int:
    """Start the cluster on 127.0.0.1:`port` (waits until it accepts connections); its pid."""
    data, log = folder / "data", folder / "postgres.log"
    if pid := running_pid(folder):
        return pid
    opts = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1"
    cmd = [str(bin_dir() / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w"]
    _run([*cmd, "-t", "60", "start"], f"start (log {log})")
    pid = running_pid(folder)
    if not pid:
        raise StackError(f"PostgreSQL did not start: see {log}")
    return pid


def running_pid(folder: Path) -> int | None:
    """The postmaster's pid from its pid file, when that process runs."""
    pidfile = folder / "data" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if proc.alive(pid, str(folder)) else None


def restart(folder: Path, down_s: float = 0.0) -> int:
    """Restart the running cluster (fast: every session is ended), as a team's database is
    restarted under its servers (the team tests use it); the new postmaster's pid, once it
    accepts connections. `down_s` 0: `pg_ctl restart` (down about a second); more: stopped
    that many seconds before it starts again, as a managed database's restart or failover
    is."""
    data, log = folder / "data", folder / "postgres.log"
    pid = running_pid(folder)
    if not pid:
        raise StackError(f"PostgreSQL in {data} is not running")
    if down_s <= 0:
        cmd = [str(bin_dir() / "pg_ctl"), "-D", str(data), "-l", str(log), "-m", "fast", "-w"]
        _run([*cmd, "-t", "60", "restart"], f"restart (log {log})")
    else:
        port = int((data / "postmaster.pid").read_text().splitlines()[3])
        stop(folder)
        time.sleep(down_s)
        start(folder, port)
    pid = running_pid(folder)
    if not pid:
        raise StackError(f"PostgreSQL did not come back: see {log}")
    return pid


def stop(folder: Path) -> bool:
    """Fast shutdown (SIGINT to the postmaster: sessions end, data stays consistent)."""
    pid = running_pid(folder)
    return bool(pid) and proc.stop(pid, str(folder), sig=signal.SIGINT, timeout=60)


def create_databases(port: int, superuser_password: str, passwords: dict[str, str]) -> None:
    """One login role per server (`passwords`: role -> password) owning its databases."""
    import psycopg2

    con = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", password=superuser_password, dbname="postgres"
    )
    con.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        _create(con, passwords)
    finally:
        con.close()


def _create(con, passwords: dict[str, str]) -> None:
    with con.cursor() as cur:
        for role, dbs in DATABASES.items():
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f'{verb} ROLE "{role}" LOGIN PASSWORD %s', (passwords[role],))
            for db in dbs:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if not cur.fetchone():
                    cur.execute(f'CREATE DATABASE "{db}" OWNER "{role}"')


def url(driver: str, role: str, password: str, port: int, db: str) -> str:
    return f"{driver}://{role}:{password}@127.0.0.1:{port}/{db}"
