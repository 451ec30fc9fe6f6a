"""Soak `python -m pipeline serve` on loopback while the champion alias moves.

    .venv/bin/python benchmarks/serve_soak.py                   # a tiny project of its own
    .venv/bin/python benchmarks/serve_soak.py --project .       # a project `make run` made

16 concurrent clients send 50 requests each (`--clients`, `--requests`): valid completions,
streams read to the end, streams dropped after the first chunks, and malformed requests (the
inputs of issue 11: a lone surrogate, a 2**70 seed, a body nested 200,000 deep, `false` for a
number, `0` for a boolean, a text/plain body, a body shorter than its Content-Length, broken
JSON, an unknown field). Meanwhile the champion is promoted to another version and rolled back,
again and again, so the server reloads under load. Everything stays on 127.0.0.1.

Prints the requests sent, the answers by status (and client-side timeouts), p50/p95 latency,
the versions that answered, the server's RSS before and after the soak, and a verdict against
the targets: no 5xx, no hang (no request over `--timeout`, the run within `--max-seconds`), RSS
growth under 10%. Exit status 1 when a target is missed.

Without --project it builds a throw-away project under a temp folder with the test suite's
tiny settings (tests/conftest.py; about 2-4 minutes on 2 CPU cores): version 1 is the champion,
version 2 the base itself (learning rate 0). With --project it uses that project's registry
as it is: it needs two registered versions (rerun the pipeline with a change, e.g.
`.venv/bin/dvc exp run -S train.epochs=1`), flips `champion` between the current champion and
the newest other version, and puts the alias and its history back afterwards. Requests ask
for at most 32 new tokens, so a real base on a CPU answers within the timeout too. RSS is read
from /proc (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "感冒有什么症状？"}]
QUESTIONS = ["感冒有什么症状？", "胃疼吃什么药？", "高血压要注意什么？", "失眠怎么办？"]
MALFORMED = [  # (raw body, Content-Type)
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "application/json"),
    (json.dumps({"messages": USER, "temperature": 0.7, "seed": 2**70}).encode(), None),
    (b'{"messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", None),
    (json.dumps({"messages": USER, "presence_penalty": False}).encode(), None),
    (json.dumps({"messages": USER, "logprobs": 0}).encode(), None),
    (json.dumps({"messages": USER}).encode(), "text/plain"),
    (b'{"messages": [', None),
    (json.dumps({"messages": USER, "best_of": 2}).encode(), None),
    (b"SHORT", None),  # a body shorter than its Content-Length, then the client gives up
]


# ------------------------------------------------------------------------------------------
# The project and the server


def _tiny_project(root: Path) -> Path:
    """Train, evaluate and register two versions of the tiny model (v1 champion, v2 lr 0)."""
    from pipeline import STAGES, run_stage
    from pipeline.config import load_config
    from tests.conftest import TINY_OVERRIDES, make_project, read_rows, register_degraded
    from tests.e2e.test_pipeline import PERMISSIVE_GATE

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:80]
    overrides = {**TINY_OVERRIDES, **PERMISSIVE_GATE, "evaluate.max_samples": 2}
    overrides |= {"serve.reload_interval_s": 0.5, "serve.max_new_tokens": 32}
    make_project(root, rows, overrides)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cfg = load_config(root / "params.yaml")
        for stage in STAGES:
            run_stage(stage, cfg)
        register_degraded(root)
    finally:
        os.chdir(cwd)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Server:
    def __init__(self, project: Path, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--port", str(self.port)],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(REPO)},  # this checkout's pipeline package
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 300) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=5).json()
                if health["status"] == "ok":
                    return health
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------------------
# The clients


def _short_body(port: int, timeout: float) -> str:
    """Content-Length 100, 14 bytes, then the client closes its side: the server must close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n" + b'{"messages": ['
        )
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.split(b" ", 2)[1].decode() if data else "closed"


def _one(http, port: int, rng: random.Random, timeout: float) -> tuple[str, str, str | None]:
    """One request of a random kind: (kind, status or 'closed' / 'timeout', model id)."""
    import httpx

    kind = rng.choices(["valid", "stream", "dropped", "malformed"], [45, 15, 15, 25])[0]
    body = {
        "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
        "max_tokens": rng.randint(1, 32),
    }
    if rng.random() < 0.3:
        body |= {"temperature": 0.7, "seed": rng.randint(0, 2**31)}
    try:
        if kind == "malformed":
            raw, content_type = rng.choice(MALFORMED)
            if raw == b"SHORT":
                return kind, _short_body(port, timeout), None
            headers = {"content-type": content_type or "application/json"}
            r = http.post("/v1/chat/completions", content=raw, headers=headers)
            return kind, str(r.status_code), None
        if kind == "valid":
            r = http.post("/v1/chat/completions", json=body)
            return kind, str(r.status_code), r.json().get("model")
        body["stream"] = True
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            model = None
            for n, line in enumerate(r.iter_lines()):
                if line.startswith("data: {") and model is None:
                    model = json.loads(line[6:]).get("model")
                if kind == "dropped" and n >= 2:
                    break  # closing the response here drops the connection mid-stream
            return kind, str(r.status_code), model
    except (httpx.TimeoutException, TimeoutError):
        return kind, "timeout", None


def _client(url: str, port: int, seed: int, n: int, timeout: float, out: list, stop) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=timeout) as http:
        for _ in range(n):
            if stop.is_set():
                return
            started = time.perf_counter()
            kind, status, model = _one(http, port, rng, timeout)
            out.append((kind, status, model, time.perf_counter() - started))


def _mover(cfg, versions: tuple[str, str], stop, period: float, moves: list) -> None:
    """Promote the other version, roll back, and again, until stopped."""
    from pipeline.registry import versions as registry

    c = registry.client(cfg)
    while not stop.wait(period):
        if len(moves) % 2 == 0:  # no gate check and no tag left on the version: a soak only
            registry.set_champion(c, cfg.register_.model_name, versions[1])
        else:
            registry.rollback(cfg)
        moves.append(time.monotonic())


# ------------------------------------------------------------------------------------------


def _versions(cfg) -> tuple[str, str]:
    """(current champion, the newest other version)."""
    from pipeline.registry import versions as registry

    c = registry.client(cfg)
    champion = registry.champion_version(c, cfg.register_.model_name)
    others = [r["version"] for r in registry.list_versions(cfg) if str(r["version"]) != champion]
    if champion is None or not others:
        raise SystemExit(
            "serve_soak: needs a champion and a second registered version to promote and roll "
            "back (rerun the pipeline with a change, e.g. `.venv/bin/dvc exp run -S "
            "train.epochs=1`), or run it without --project to soak a tiny project of its own"
        )
    return champion, str(max(others))


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms"


def _drive(server: Server, cfg, versions: tuple[str, str], args) -> dict:
    """Warm up, then the clients and the alias mover together; RSS before and after."""
    results: list = []
    moves: list = []
    stop = threading.Event()
    rss = {"loaded": _rss_mib(server.proc.pid)}
    _client(server.url, server.port, 0, 8, args.timeout, [], threading.Event())  # warm-up
    rss["before"] = _rss_mib(server.proc.pid)
    threads = [
        threading.Thread(
            target=_client,
            args=(server.url, server.port, 1 + i, args.requests, args.timeout, results, stop),
            daemon=True,
        )
        for i in range(args.clients)
    ]
    mover = threading.Thread(
        target=_mover, args=(cfg, versions, stop, args.move_every, moves), daemon=True
    )
    started = time.monotonic()
    mover.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, args.max_seconds - (time.monotonic() - started)))
    hung = any(t.is_alive() for t in threads)
    stop.set()
    mover.join(30)
    wall = time.monotonic() - started
    time.sleep(1.0)  # let the last dropped streams wind down before reading RSS
    rss["after"] = _rss_mib(server.proc.pid)
    alive = server.proc.poll() is None
    return {"results": results, "moves": moves, "wall": wall, "hung": hung, "alive": alive, **rss}


def _report(run: dict, log: str, expected: int) -> bool:
    results = run["results"]
    statuses = Counter(status for _, status, _, _ in results)
    by_kind = Counter((kind, status) for kind, status, _, _ in results)
    valid = [s for kind, status, _, s in results if kind == "valid" and status == "200"]
    models = Counter(m for _, _, m, _ in results if m)
    five = sum(n for status, n in statuses.items() if status.startswith("5"))
    growth = (run["after"] - run["before"]) / run["before"]
    print(f"requests: {len(results)} of {expected} in {run['wall']:.1f} s, "
          f"{len(run['moves'])} alias moves (promote / rollback)")  # fmt: skip
    print("by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print("by kind:   " + ", ".join(f"{k}/{s}: {v}" for (k, s), v in sorted(by_kind.items())))
    print(f"latency, all requests: {_ms([s for *_, s in results])}")
    print(f"latency, valid completions: {_ms(valid)}")
    print("answered by: " + ", ".join(f"{m}: {n}" for m, n in sorted(models.items())))
    print(
        f"server RSS: {run['loaded']:.0f} MiB loaded, {run['before']:.0f} MiB before the soak, "
        f"{run['after']:.0f} MiB after ({growth:+.1%})"
    )
    print(f"server log: {log.count('Traceback')} tracebacks, {log.count(' 500 ')} lines with 500")
    checks = {
        "no 5xx": five == 0 and " 500 " not in log,
        "no hang": not run["hung"] and not statuses["timeout"] and len(results) == expected,
        "server alive": run["alive"],
        "RSS growth < 10%": growth < 0.10,
    }
    print("verdict: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    return all(checks.values())


def soak(project: Path, args) -> bool:
    from pipeline.config import load_config
    from pipeline.registry import versions as registry

    os.chdir(project)  # the registry's relative paths (sqlite, artifacts) are the project's
    cfg = load_config(project / "params.yaml")
    versions = _versions(cfg)
    before = registry.snapshot(cfg)
    server = Server(project, Path(tempfile.gettempdir()) / f"serve_soak-{os.getpid()}.log")
    try:
        health = server.wait_ready()
        print(
            f"server pid {server.proc.pid} on {server.url}, serving version {health['version']}; "
            f"its log: {server.log_path}"
        )
        run = _drive(server, cfg, versions, args)
    finally:
        server.stop()
        registry.restore(cfg, before)  # the alias and its history as they were
    return _report(run, server.log_path.read_text(), args.clients * args.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a project `make run` made (default: own)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--timeout", type=float, default=60, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=900, help="for the whole soak")
    parser.add_argument("--move-every", type=float, default=2.0, help="seconds between moves")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # this checkout's pipeline (and tests, for the tiny project)
    from pipeline.environment import offline_env

    offline_env(hub_offline=True)
    if args.project:
        ok = soak(args.project.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="serve-soak-") as tmp:
            started = time.monotonic()
            project = _tiny_project(Path(tmp) / "project")
            print(f"tiny project with two versions built in {time.monotonic() - started:.0f} s")
            ok = soak(project, args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
