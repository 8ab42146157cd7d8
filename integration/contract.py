#!/usr/bin/env python3
"""The OpenAPI document is the contract: schemathesis (`--checks all`, every phase, the stateful
one included) against a configured server with processes and a checkpoint reports nothing.

Starts `state-manager serve` on an ephemeral port with a fresh data directory, local storage
and a JWT secret, waits until it owns the lease, takes a checkpoint (so ids in the catalog are
real), then runs schemathesis with an admin token. The streaming routes (`/events/stream`,
`GET …/logs` with `follow`) never end a response and are left out. `GET /readyz` is in: its
503 (a node that should get no traffic, e.g. after the stateful phase's `POST /release-lease`)
is a documented answer, so the config written for the run lets `not_a_server_error` accept 503
for that one operation; every other check, the body's schema included, applies to it as to any
route. Exit code is schemathesis's.

    python3 integration/contract.py --bin target/debug/state-manager --schemathesis .venv/bin/schemathesis
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SECRET = "contract-secret-0123456789abcdef-0123456789"
CONFIG = {
    "stacks": [
        {"name": "web", "command": "sleep 100000", "instances": 2, "stop_timeout": "2s"},
        {"name": "worker", "command": "sleep 100000", "stop_timeout": "2s",
         "depends_on": ["web"]},
    ],
    "lease": {"ttl": "6s", "poll_interval": "500ms", "clock_skew": "1s"},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, token, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def wait(what, cond, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"contract: timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--schemathesis", required=True)
    ap.add_argument("--max-examples", default="25")
    args = ap.parse_args()

    env = dict(os.environ, STATE_MANAGER_JWT_SECRET=SECRET, STATE_MANAGER_LOG_FORMAT="json")
    token = subprocess.run([args.bin, "token", "--scope", "admin", "--ttl", "1h"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        with open(os.path.join(data, "config.json"), "w") as f:
            json.dump(CONFIG, f)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(tmp, "serve.log"), "w")
        server = subprocess.Popen([args.bin, "serve", "--data-dir", data,
                                   "--listen", f"127.0.0.1:{port}"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait("the node to own the lease", lambda: call(f"{base}/", token)["role"] == "owner")
            call(f"{base}/checkpoint", token, "POST", b'{"label": "contract"}')
            started = time.monotonic()
            settings = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")
            rc = subprocess.run([
                args.schemathesis, "--config-file", settings, "run", f"{base}/openapi.json",
                "--checks", "all",
                "--header", f"Authorization: Bearer {token}",
                "--exclude-path", "/events/stream",
                "--exclude-path", "/processes/{name}/logs",
                "--max-examples", args.max_examples,
                "--seed", "1",
                "--workers", "1",
                "--request-timeout", "30",
            ]).returncode
            print(f"contract: schemathesis took {time.monotonic() - started:.0f} s")
            if server.poll() is not None:
                print(f"contract: the server exited with {server.returncode}")
                rc = rc or 1
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
            if rc if 'rc' in locals() else True:
                log.close()
                with open(os.path.join(tmp, "serve.log")) as f:
                    tail = f.readlines()[-40:]
                sys.stderr.write("contract: the last lines of the server's log:\n" + "".join(tail))
    return rc


if __name__ == "__main__":
    sys.exit(main())
