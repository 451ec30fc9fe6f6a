"""An HTTP proxy in front of a real server that fails the requests of one path only.

    python -m tests.e2e.flaky_proxy --upstream http://127.0.0.1:5000 --port 5001 \
        --fail-path /api/2.0/mlflow/registered-models/alias --mode 503

Every other request is forwarded as it came (method, path, query, headers, body) and answered
with the upstream's status, headers and body. A request for `--fail-path` gets a 503 with a
plain-text body (`--mode 503`, a load balancer in front of a server that is down) or has its
connection closed without an answer (`--mode drop`). One line per request goes to stdout:
`<method> <path> -> <status>` (`-> dropped` for a closed one), for the test to read.
"""

from __future__ import annotations

import argparse
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def handler(upstream: str, fail_path: str, mode: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # one line of our own per request instead
            pass

        def _record(self, outcome: str) -> None:
            print(f"{self.command} {self.path} -> {outcome}", flush=True)

        def _forward(self) -> None:
            if urlsplit(self.path).path == fail_path:
                self._fail()
                return
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._record(str(response.status))

        def _fail(self) -> None:
            self.close_connection = True
            if mode == "drop":  # no status line at all: the client sees a broken connection
                self._record("dropped")
                return
            data = b"Service Unavailable"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._record("503")

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

    return Proxy


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-path", required=True)
    p.add_argument("--mode", choices=["503", "drop"], default="503")
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(args.upstream, args.fail_path, args.mode)
    )
    print(f"proxy on 127.0.0.1:{args.port} -> {args.upstream}", flush=True, file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
