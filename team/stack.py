"""`python -m team up|down|status`: the team stack's processes, ports, secrets and env file.

Everything lives under one folder (`.team/` by default): `secrets.json` and `state.json`
(0600), one sub-folder and log per server, `env` (what to export) and `env.<account>` for the
other MLflow accounts. Secrets are generated on the first `up` and kept, as is every server's
data: a second `up` restarts what is not running and changes nothing else."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from team import objectstore, postgres, proc, services
from team.errors import StackError

SECRET_NAMES = (
    "postgres",
    "db_mlflow",
    "db_prefect",
    "s3_key",
    "s3_secret",
    "admin",
    "trainer",
    "reviewer",
    "viewer",
    "prefect",
    "flask",
)
PORT_NAMES = ("postgres", "s3", "mlflow", "prefect")


@dataclass
class Stack:
    """The stack rooted at `folder`, for the project at `project`."""

    folder: Path
    project: Path
    # step -> (its seconds, seconds from the start of `up` to its end), of the last `up`
    timings: dict[str, tuple[float, float]] = field(default_factory=dict, init=False, repr=False)
    # `up` starts servers side by side: each records its pid in state.json from its thread
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        self.folder = self.folder.resolve()
        self.project = self.project.resolve()

    # --- files -------------------------------------------------------------------------------
    def _json(self, name: str) -> dict:
        path = self.folder / name
        return json.loads(path.read_text()) if path.exists() else {}

    def _write(self, name: str, text: str) -> None:
        path = self.folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)

    def secrets(self) -> dict[str, str]:
        found = self._json("secrets.json")
        missing = [n for n in SECRET_NAMES if n not in found]
        if missing:
            found |= {n: secrets.token_urlsafe(18) for n in missing}
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write("secrets.json", json.dumps(found, indent=1))
        return found

    def state(self) -> dict:
        state = self._json("state.json")
        if "ports" not in state:
            # S3's gRPC port is its port + 10000 (see objectstore): pick them as weed's are
            s3, *weed = objectstore.pick_ports(1 + len(objectstore.SERVERS))
            others = proc.free_ports(len(PORT_NAMES) - 1)
            state = {"ports": dict(zip(("postgres", "mlflow", "prefect"), others, strict=True))}
            state["ports"] |= {"s3": s3, "weed": weed}
            state["pids"] = {}
            self.folder.mkdir(parents=True, exist_ok=True)
            self.save_state(state)  # before anything starts: a failed `up` is resumed, not lost
        return state

    def save_state(self, state: dict, **changes: dict) -> None:
        """Merge `changes` (section -> {key: value}, e.g. pids={"s3": 123}) into `state`, then
        write state.json (0600, replaced atomically). Safe from several threads at once: `up`
        starts and sets up the servers side by side, each recording what it did."""
        with self._lock:
            for section, values in changes.items():
                state.setdefault(section, {}).update(values)
            self._write("state.json", json.dumps(state, indent=1))

    # --- up / down ---------------------------------------------------------------------------
    def up(self) -> float:
        """Start what is not running, provision, write the env files; seconds it took (each
        step's own seconds, from the start of `up` to its end, are in `self.timings`)."""
        t0 = time.monotonic()
        self.timings.clear()
        timed = lambda name, fn, *a: _timed(self.timings, t0, name, fn, *a)  # noqa: E731
        self.folder.mkdir(parents=True, exist_ok=True)
        _ignore_in_git(self.folder)
        sec, state = self.secrets(), self.state()
        ports, pids = state["ports"], state["pids"]
        marker = str(self.folder)
        _check_ports(ports, pids, marker)
        save = lambda **pid: self.save_state(state, pids=pid)  # noqa: E731 - each its own pid
        env = self.env(sec, ports)
        done, wanted = state.setdefault("provisioned", {}), services.provision_signature(self)

        def set_up(name: str, step) -> None:
            """A server's set-up, right after it is ready: only when what it depends on changed
            since the last `up`."""
            if done.get(name) != wanted[name]:
                timed(f"{name} set-up", step)
                self.save_state(state, provisioned={name: wanted[name]})

        def mlflow(s3) -> None:
            timed("mlflow", services.start_mlflow, self, ports, pids, sec, s3, save)
            set_up("mlflow", lambda: services.provision_mlflow(self, env, sec))

        def prefect() -> None:
            # its set-up process imports Prefect while the server starts, then waits for it
            setup = None
            if done.get("prefect") != wanted["prefect"]:
                setup = services.start_prefect_setup(self, env)
            try:
                timed("prefect", services.start_prefect, self, ports, pids, sec, save)
            except BaseException:
                if setup:
                    setup.kill()
                    setup.wait()
                raise
            log = self.folder / "prefect" / "setup.log"
            set_up("prefect", lambda: setup and services.finish_prefect_setup(setup, log))

        try:
            with ThreadPoolExecutor(max_workers=3) as pool:
                s3 = pool.submit(timed, "s3", services.start_s3, self, ports, pids, sec, save)
                pid = timed("postgres", services.start_postgres, self, ports["postgres"], sec)
                save(postgres=pid)
                jobs = [s3, pool.submit(mlflow, s3), pool.submit(prefect)]
                for job in jobs:
                    job.result()
        finally:
            save()
        timed("dvc remote", services.configure_dvc, self.project, env)
        self._write_env_files(env, sec)
        return time.monotonic() - t0

    def down(self) -> list[str]:
        """Stop every process this stack started (by the pids it recorded); the data stays."""
        state = self._json("state.json")
        pids, marker, stopped = state.get("pids", {}), str(self.folder), []
        for name in ("prefect", "mlflow", "s3"):
            if proc.stop(pids.get(name, 0), marker):
                stopped.append(name)
        if postgres.stop(self.folder / "postgres"):
            stopped.append("postgres")
        if state:
            state["pids"] = {}
            self.save_state(state)
        return stopped

    def status(self) -> dict[str, bool]:
        pids, marker = self._json("state.json").get("pids", {}), str(self.folder)
        running = {n: proc.alive(pids.get(n), marker) for n in ("s3", "mlflow", "prefect")}
        return {"postgres": bool(postgres.running_pid(self.folder / "postgres"))} | running

    # --- environment -------------------------------------------------------------------------
    def env(self, sec: dict[str, str], ports: dict) -> dict[str, str]:
        """What a member of the team exports (the `trainer` account)."""
        return {
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "MLFLOW_TRACKING_USERNAME": "trainer",
            "MLFLOW_TRACKING_PASSWORD": sec["trainer"],
            "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "PREFECT_API_AUTH_STRING": f"admin:{sec['prefect']}",
            # Prefect's server answers 500 while PostgreSQL restarts: retry it as a 503
            "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
            "AWS_ACCESS_KEY_ID": sec["s3_key"],
            "AWS_SECRET_ACCESS_KEY": sec["s3_secret"],
        }

    def _write_env_files(self, env: dict[str, str], sec: dict[str, str]) -> None:
        self._write("env", "".join(f"export {k}={v}\n" for k, v in env.items()))
        for user in ("admin", "reviewer", "viewer"):
            lines = f"export MLFLOW_TRACKING_USERNAME={user}\n"
            lines += f"export MLFLOW_TRACKING_PASSWORD={sec[user]}\n"
            self._write(f"env.{user}", lines)

    def read_env(self, account: str | None = None) -> dict[str, str]:
        """The env file(s) as a dict (`account`: overlay `env.<account>`)."""
        names = ["env"] + ([f"env.{account}"] if account and account != "trainer" else [])
        env = {}
        for name in names:
            for line in (self.folder / name).read_text().splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value
        return env


def _timed(timings: dict[str, tuple[float, float]], t0: float, name: str, fn, *args):
    """`fn(*args)`, its seconds in `timings[name]` (as "took" and "done at", from `t0`)."""
    start = time.monotonic()
    try:
        return fn(*args)
    finally:
        end = time.monotonic()
        timings[name] = (round(end - start, 1), round(end - t0, 1))


def _check_ports(ports: dict, pids: dict, marker: str) -> None:
    """A recorded port held by another program (our server being down) is an error."""
    for name in ("s3", "mlflow", "prefect"):
        if not proc.alive(pids.get(name), marker) and proc.port_open(ports[name]):
            raise StackError(
                f"port {ports[name]} ({name}) is taken by another program; stop it or "
                f"remove {marker}/state.json to pick new ports (the data stays)"
            )


def _ignore_in_git(folder: Path) -> None:
    """The folder holds secrets: never let `git add -A` pick it up."""
    (folder / ".gitignore").write_text("*\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m team", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", default=".team", help="the stack's folder (default .team)")
    parser.add_argument("--project", default=".", help="the project whose .dvc and prefect.yaml")
    args = parser.parse_args(argv)
    stack = Stack(Path(args.dir), Path(args.project))
    try:
        if args.command == "up":
            seconds = stack.up()
            print(services.usage(stack, seconds))
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'} (data kept)")
        else:
            for name, running in stack.status().items():
                print(f"{name:9} {'running' if running else 'stopped'}")
    except StackError as e:
        print(f"team {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
