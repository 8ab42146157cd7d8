"""The servers a runbook runs against: the moto S3 server and state-manager nodes, each started
on a free loopback port and always stopped (by pid) when the harness closes.

moto is found like the Rust fixture (tests/common/moto.rs) finds it: `MOTO_SERVER`, else
`<repo>/.venv/bin/moto_server`, else `moto_server` on PATH. moto checks `If-None-Match` /
`If-Match` and then stores without a lock, so racing conditional writes (the lease) can both
succeed under load; as in the fixture, a Python launcher is run through its interpreter with
every request handled under one lock, which gives S3's atomicity with the real server.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

INSTALL = (
    "the runbook needs the moto server: `make deps` (or `python3 -m venv .venv && "
    ".venv/bin/pip install 'moto[server]'`), or set MOTO_SERVER=/path/to/moto_server"
)

SERIALIZED_MAIN = r"""
import sys, threading
from moto.moto_server import werkzeug_app
import moto.server
lock = threading.Lock()
handle = werkzeug_app.DomainDispatcherApplication.__call__
def serialized(self, environ, start_response):
    with lock:
        return handle(self, environ, start_response)
werkzeug_app.DomainDispatcherApplication.__call__ = serialized
sys.exit(moto.server.main(sys.argv[1:]))
"""

START_DEADLINE = 120.0
# Loopback servers are reached directly, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HarnessError(Exception):
    """A server did not start; the message names it and carries its log."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_moto(repo):
    if os.environ.get("MOTO_SERVER"):
        p = Path(os.environ["MOTO_SERVER"])
        if not p.is_file():
            raise HarnessError(f"MOTO_SERVER={p} does not exist; {INSTALL}")
        return p
    venv = repo / ".venv/bin/moto_server"
    if venv.is_file():
        return venv
    found = shutil.which("moto_server")
    if not found:
        raise HarnessError(f"moto_server not found; {INSTALL}")
    return Path(found)


def python_of(launcher):
    """The interpreter of a Python launcher script, or None."""
    with open(launcher, "rb") as f:
        first = f.read(256).split(b"\n", 1)[0].decode(errors="replace")
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and words[0].endswith("/env"):
        words = words[1:]
    return words[0] if words and Path(words[0]).name.startswith("python") else None


def http_status(url, headers=None, method="GET"):
    """The status of one request, or None if nothing answers."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with DIRECT.open(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


class Harness:
    """Starts servers and stops every one of them on close, also after an error or Ctrl-C."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.children = []  # (name, Popen, log path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def spawn(self, name, argv, env=None, cwd=None):
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            child = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.children.append((name, child, log))
        return child, log

    def wait_up(self, name, child, log, url, headers=None):
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if http_status(url, headers) is not None:
                return
            if child.poll() is not None:
                break
            time.sleep(0.1)
        raise HarnessError(f"{name} did not answer at {url}:\n{log.read_text(errors='replace')}")

    def start_moto(self, repo):
        """The moto server on a free port; its endpoint URL."""
        moto = find_moto(repo)
        python = python_of(moto)
        argv = [python, "-c", SERIALIZED_MAIN] if python else [str(moto)]
        # A port found free can be taken before moto binds it: try another.
        for attempt in range(3):
            port = free_port()
            child, log = self.spawn("moto", argv + ["-H", "127.0.0.1", "-p", str(port)])
            endpoint = f"http://127.0.0.1:{port}"
            try:
                self.wait_up("moto server", child, log, endpoint + "/moto-api/")
                return endpoint
            except HarnessError:
                if attempt == 2:
                    raise
                self.stop_last()

    def create_bucket(self, endpoint, bucket):
        status = http_status(f"{endpoint}/{bucket}", method="PUT")
        if status != 200:
            raise HarnessError(f"moto refused to create bucket {bucket!r}: HTTP {status}")

    def start_node(self, name, binary, data_dir, env):
        """`state-manager serve` on a free port with `data_dir` relative to the workdir."""
        port = free_port()
        argv = [str(binary), "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"]
        child, log = self.spawn(name, argv, env=env, cwd=self.workdir)
        base = f"http://127.0.0.1:{port}"
        self.wait_up(name, child, log, base + "/healthz")
        return base, log

    def stop_last(self):
        _, child, _ = self.children.pop()
        child.kill()
        child.wait(timeout=30)

    def close(self):
        """SIGTERM each server (nodes stop their processes gracefully), SIGKILL what is left."""
        for _, child, _ in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, child, _ in reversed(self.children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Supervised processes die with their node (PR_SET_PDEATHSIG).
                child.kill()
                child.wait(timeout=30)
        self.children.clear()
