"""The MLflow accounts of a team and what each may do (MLflow's basic-auth permissions):

- `admin`: everything (MLflow's bootstrap account; creates the others);
- `trainer`: runs in the experiment, registers versions, moves `challenger` (EDIT); when
  `evaluate.gate.require_approval` is off the gate promotes, so it also moves `champion`
  (MANAGE);
- `reviewer`: moves `champion` too (MANAGE on the model: promote, roll back);
- `viewer`: reads runs, versions and artifacts (the server's default READ).

The registered model and the experiment are created by the admin here, so that whoever runs
the pipeline first does not become their owner (MLflow gives a creator MANAGE)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from team.errors import StackError

USERS = ("trainer", "reviewer", "viewer")
MODEL_PERMISSIONS = {"trainer": "EDIT", "reviewer": "MANAGE", "viewer": "READ"}
EXPERIMENT_PERMISSIONS = {"trainer": "EDIT", "reviewer": "EDIT", "viewer": "READ"}


class Api:
    """MLflow's REST API as one account."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(
        self, method: str, path: str, body: dict | None = None, version: str = "2.0"
    ) -> tuple[int, dict]:
        url = f"{self.url}/api/{version}/mlflow/{path}"
        data = None
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return e.code, {"message": raw.decode(errors="replace")[:300]}

    def must(self, method: str, path: str, body: dict | None = None, version="2.0") -> dict:
        status, answer = self.call(method, path, body, version)
        if status != 200:
            raise StackError(f"MLflow {method} {path} -> {status}: {answer.get('message')}")
        return answer


def provision(
    api: Api, passwords: dict[str, str], model: str, experiment: str, gated: bool
) -> None:
    """Create (or reset the passwords of) the accounts; grant them the model and experiment.
    `gated` (evaluate.gate.require_approval): `trainer` may not move `champion`; otherwise the
    pipeline's gate promotes, so `trainer` gets MANAGE on the model."""
    for user in USERS:
        status, _ = api.call("GET", "users/get", {"username": user})
        if status == 200:
            body = {"username": user, "password": passwords[user]}
            api.must("PATCH", "users/update-password", body)
        else:
            api.must("POST", "users/create", {"username": user, "password": passwords[user]})
    status, _ = api.call("GET", "registered-models/get", {"name": model})
    if status != 200:
        api.must("POST", "registered-models/create", {"name": model})
    status, found = api.call("GET", "experiments/get-by-name", {"experiment_name": experiment})
    if status == 200:
        experiment_id = found["experiment"]["experiment_id"]
    else:
        experiment_id = api.must("POST", "experiments/create", {"name": experiment})[
            "experiment_id"
        ]
    for user in USERS:
        permission = MODEL_PERMISSIONS[user]
        if user == "trainer" and not gated:
            permission = "MANAGE"
        _grant(api, user, "registered_model", model, permission)
        _grant(api, user, "experiment", experiment_id, EXPERIMENT_PERMISSIONS[user])


def _grant(api: Api, user: str, kind: str, resource: str, permission: str) -> None:
    """Give `user` exactly `permission` on one resource (MLflow 3.17's grant API)."""
    key = {"username": user, "resource_type": kind, "resource_id": resource}
    status, found = api.call("GET", "users/permissions/get", key, "3.0")
    if status == 200 and found.get("permission") == permission:
        return
    api.call("POST", "users/permissions/revoke", key, "3.0")  # none yet: nothing to revoke
    api.must("POST", "users/permissions/grant", key | {"permission": permission}, "3.0")
