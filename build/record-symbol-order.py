#!/usr/bin/env python3
"""Record which functions of the release binary run, in the order the linker should lay them out.

The kernel maps a binary's code 64 kB at a time around each page it faults in, so code that runs
at start-up and while idle, scattered over 11 MB of text, keeps most of the text resident. Listed
in `build/symbol-order.txt`, LLD (`--symbol-ordering-file`, passed by build.rs for release builds)
puts those functions next to each other and the resident code shrinks to about their size.

Run under valgrind's callgrind, which records every function that executes:
  0. the fence process (`state-manager fence`, which every `serve` starts beside itself) from its
     start to its wait for the next renewal of the lease;
  1. `serve` with 10 `sleep` processes on local storage, and a stack of 990 more configured
     with `autostart: false`: start-up (a set of 1,000 loaded), then idle past a lease renewal;
  2. the 990 started (`POST /processes/big-*/start`) until 1,000 run: what only runs with many
     processes (larger tables, longer batches) is laid out too, after the idle code;
  3. the requests of the runbook (docs/RUNBOOK.md) against it (status, processes, logs, events,
     metrics, config, restart, checkpoint), then shutdown.
Functions of phase 0 come first (the fence then keeps only the first pages of the text
resident), then those first seen in phase 1, 2 and 3; each group is sorted by name so the file
changes only where the code does.

Usage: build/record-symbol-order.py [--binary target/release/state-manager] [--out FILE]
       build/record-symbol-order.py --check   # how much of the list the binary still matches
Needs valgrind (Debian package `valgrind`) and a release binary with its symbol table.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SECRET = "symbol-order-recording-secret-0123456789"
IDLE_SECS = 12  # past one lease renewal (ttl 30 s / 3 = 10 s)
FN = re.compile(r"^c?fn=\((\d+)\)(?: (.+))?$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, path, token=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def wait_for(what, deadline_s, probe):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    sys.exit(f"record-symbol-order: timed out waiting for {what}")


def functions(path):
    """Names of the functions with a cost in one callgrind dump (recursion marks removed)."""
    names = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = FN.match(line.rstrip("\n"))
            if m and m.group(2):
                names[m.group(1)] = re.sub(r"'\d+$", "", m.group(2))
    return set(names.values())


def binary_functions(binary):
    out = subprocess.run(["nm", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    return {p[2] for p in (l.split() for l in out.splitlines())
            if len(p) == 3 and p[1] in "tTwW"}


def check(binary, listing):
    with open(listing) as f:
        listed = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    present = binary_functions(binary)
    found = sum(1 for n in listed if n in present)
    share = found / max(len(listed), 1)
    print(f"{found} of {len(listed)} listed functions are in {binary} ({share:.0%})")
    if share < 0.9:
        sys.exit("the list is stale: run build/record-symbol-order.py, then build again")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/state-manager"))
    ap.add_argument("--out", default=os.path.join(HERE, "symbol-order.txt"))
    ap.add_argument("--check", action="store_true",
                    help="only report how many listed functions the binary has (exit 1 below 90 %%)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    if args.check:
        return check(binary, args.out)
    work = tempfile.mkdtemp(prefix="symbol-order-")
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"stacks": [{"name": "s", "command": "sleep", "args": ["100000"],
                               "instances": 10, "restart_delay": "0s",
                               "stop_timeout": "2s"},
                              {"name": "big", "command": "sleep", "args": ["100000"],
                               "instances": 990, "autostart": False, "restart_delay": "0s",
                               "stop_timeout": "2s"}]}, f)
    port = free_port()
    out = os.path.join(work, "callgrind.out")
    env = dict(os.environ, STATE_MANAGER_JWT_SECRET=SECRET)
    vg = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
         binary, "serve", "--config", config, "--data-dir", os.path.join(work, "data"),
         "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
    try:
        token = subprocess.run([binary, "token", "--scope", "admin"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()

        def running(n):
            code, body = call(port, "/", token)
            return code == 200 and json.loads(body)["processes"]["running"] == n

        wait_for("10 running processes", 180, lambda: running(10))
        fence = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--demangle=no",
             f"--callgrind-out-file={os.path.join(work, 'callgrind.fence')}",
             binary, "fence", "--page", os.path.join(work, "data", "fence"),
             "--server", str(vg.pid)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "fence.log"), "w"))
        time.sleep(IDLE_SECS)
        fence.terminate()
        fence.wait(timeout=60)
        subprocess.run(["callgrind_control", "--dump=startup-idle", str(vg.pid)], check=True,
                       capture_output=True)
        code, _ = call(port, "/processes/big-*/start", token, "POST")
        print(f"POST /processes/big-*/start: {code}", file=sys.stderr)
        wait_for("1,000 running processes", 600, lambda: running(1000))
        subprocess.run(["callgrind_control", "--dump=scale", str(vg.pid)], check=True,
                       capture_output=True)
        for method, path in [("GET", "/healthz"), ("GET", "/"), ("GET", "/processes"),
                             ("GET", "/processes/s-1"), ("GET", "/processes/s-1/logs?tail=10"),
                             ("GET", "/events?limit=20"), ("GET", "/metrics"),
                             ("GET", "/config"), ("POST", "/processes/s-1/restart"),
                             ("POST", "/checkpoint"), ("GET", "/checkpoints"),
                             ("GET", "/nowhere")]:
            code, _ = call(port, path, token, method)
            print(f"{method} {path}: {code}", file=sys.stderr)
    finally:
        vg.send_signal(signal.SIGTERM)
        vg.wait(timeout=120)

    dumps = sorted((p for p in os.listdir(work) if p.startswith("callgrind.out")),
                   key=lambda p: int(p.rsplit(".", 1)[-1]) if p[-1].isdigit() else 1 << 30)
    if len(dumps) < 3 or not os.path.exists(os.path.join(work, "callgrind.fence")):
        sys.exit(f"record-symbol-order: expected the fence's and three serve callgrind dumps in "
                 f"{work}, found {sorted(os.listdir(work))}")
    dumps.insert(0, "callgrind.fence")
    ours = binary_functions(binary)
    order, seen = [], set()
    for d in dumps:
        fresh = sorted((functions(os.path.join(work, d)) & ours) - seen)
        seen.update(fresh)
        order.append((d, fresh))
    with open(args.out + ".tmp", "w") as f:
        f.write("# Functions of state-manager that run at start-up and idle, then while serving\n"
                "# common requests: laid out first and together by the linker (build.rs).\n"
                "# Regenerate with build/record-symbol-order.py after a dependency or toolchain\n"
                "# update (names that no longer exist are ignored).\n")
        for d, names in order:
            f.write(f"# {d}: {len(names)} functions\n")
            f.writelines(n + "\n" for n in names)
    os.replace(args.out + ".tmp", args.out)
    print(f"{args.out}: " + ", ".join(f"{len(n)} from {d}" for d, n in order), file=sys.stderr)


if __name__ == "__main__":
    main()
