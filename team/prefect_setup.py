"""`python -m team.prefect_setup POOL LIMIT DEPLOYMENT [--wait S]`: what `make deploy` does on
the stack's Prefect server (PREFECT_API_URL, PREFECT_API_AUTH_STRING): the process work pool,
the training concurrency limit of 1, the deployment from the prefect.yaml of the current
folder. The same `prefect` CLI commands, run one after another in this one process: Prefect is
imported once, not once per command (each `prefect` command is a second or more of CPU on a
busy machine). A pool or limit that exists is kept.

`--wait S`: import Prefect's CLI first, then wait up to S seconds for the API to answer, so that
`team up` can start this while the server is still starting.

Exit status: 0 done; 3 the API did not answer in time; otherwise that of the command that
failed (its output is above)."""

from __future__ import annotations

import sys


def steps(pool: str, limit: str, deployment: str) -> list[tuple[list[str] | None, list[str]]]:
    """(check, create): `create` runs when `check` fails (or there is none)."""
    return [
        (["work-pool", "inspect", pool], ["work-pool", "create", pool, "--type", "process"]),
        (
            ["global-concurrency-limit", "inspect", limit],
            ["global-concurrency-limit", "create", limit, "--limit", "1"],
        ),
        (None, ["--no-prompt", "deploy", "--name", deployment]),
    ]


def prefect(args: list[str]) -> int:
    """One `prefect ARGS` command, in this process; its exit status."""
    from prefect.cli import app

    argv = sys.argv
    sys.argv = ["prefect", *args]
    try:
        app()
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = argv
    return 0


def wait_for_api(seconds: float) -> bool:
    """Import what the commands need, then wait until the API answers a real query."""
    import os
    import time

    import prefect.cli.deploy  # noqa: F401 - the imports are what this overlaps with the start
    import prefect.cli.global_concurrency_limit  # noqa: F401
    import prefect.cli.work_pool  # noqa: F401

    from team import services

    url = os.environ["PREFECT_API_URL"]
    headers = services.prefect_auth_header(os.environ.get("PREFECT_API_AUTH_STRING", ""))
    deadline = time.monotonic() + seconds
    while not services.prefect_ready(url, headers):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str]) -> int:
    if "--wait" in argv:
        at = argv.index("--wait")
        seconds, argv = float(argv[at + 1]), argv[:at] + argv[at + 2 :]
        if not wait_for_api(seconds):
            print(
                f"team: no Prefect API at $PREFECT_API_URL after {seconds:.0f} s", file=sys.stderr
            )
            return 3
    for check, create in steps(*argv):
        if check and prefect(check) == 0:
            continue
        if code := prefect(create):
            print(f"team: prefect {' '.join(create)} failed ({code})", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
