#!/usr/bin/env python3
"""Runs the runbook of the docs end to end and checks every answer.

It starts the moto S3 server and two state-manager nodes (node-a and node-b: their own data
directories and ports, the same bucket and prefix, the JWT secret and S3 settings by
environment, as docs/RUNBOOK.md starts them), then runs each `$ command` of the marked runbook
steps with bash, in order, with `$SM` / `$SM2` set to the two nodes' URLs: docs/RUNBOOK.md
first, then every other page that carries marked steps (pages.py). Each step is checked twice:
against what it must answer (steps.py), and against the shape of the output its page shows
(pages.py), so the documentation cannot drift from the program.

    integration/runbook.py [--bin target/debug/state-manager] [--page docs/RUNBOOK.md]... [--show]

The binary may also come from STATE_MANAGER_BIN; moto from MOTO_SERVER (see harness.py). Every
server started is stopped at the end, also on failure or Ctrl-C. On failure the working
directory (node logs, data directories) is kept and named.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import harness
import pages
import steps
from shell import Shell

REPO = Path(__file__).resolve().parent.parent
POLL_DEADLINE = 120.0


def args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=os.environ.get("STATE_MANAGER_BIN", "target/debug/state-manager"),
                   help="the state-manager binary "
                        "(default: $STATE_MANAGER_BIN or target/debug/state-manager)")
    p.add_argument("--page", action="append", dest="pages", metavar="PAGE",
                   help="a page (relative to the repository) whose marked steps run, in the "
                        "order given (repeatable); default: the whole runbook, "
                        f"{pages.RUNBOOK} then every other page with marked steps")
    p.add_argument("--show", action="store_true",
                   help="print each command's real output, and report an output whose shape "
                        "differs from its page's without failing (to update the page)")
    return p.parse_args()


def load(names, complete=True):
    """The runbook of the pages `names` (relative to the repository). Every step needs a check,
    and, when the pages are the whole runbook (`complete`), every check a step."""
    book = pages.collect((n, (REPO / n).read_text()) for n in names)
    found = [s.name for s in book.steps]
    unchecked = [f"{s.name} ({s.where()})" for s in book.steps if s.name not in steps.CHECKS]
    missing = [n for n in steps.CHECKS if n not in found] if complete else []
    problems = []
    if unchecked:
        problems.append(f"steps without a check in integration/steps.py: {', '.join(unchecked)}")
    if missing:
        problems.append(f"checks in integration/steps.py without a step: {', '.join(missing)}")
    if problems:
        raise pages.PageError("; ".join(problems))
    if "config.json" not in book.files:
        raise pages.PageError("the runbook needs a `<!-- runbook-file: config.json -->` block")
    return book


def base_env():
    """The caller's environment without any STATE_MANAGER_* setting of its own, and with the
    loopback servers out of reach of any proxy it names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATE_MANAGER_")}
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    return env


def start(h, book, binary, workdir):
    """moto with the config's bucket, and the two nodes; the shell's environment."""
    storage = json.loads(book.files["config.json"]).get("storage", {})
    endpoint = h.start_moto(REPO)
    h.create_bucket(endpoint, storage["bucket"])
    secret, s3_secret = secrets.token_hex(32), "s3-" + secrets.token_hex(8)
    env = base_env() | {
        "STATE_MANAGER_JWT_SECRET": secret,
        "STATE_MANAGER_S3_ENDPOINT": endpoint,
        "STATE_MANAGER_S3_ACCESS_KEY": "minioadmin",
        "STATE_MANAGER_S3_SECRET_KEY": s3_secret,
    }
    nodes = {}
    for name in ("a", "b"):
        node_env = env | {"STATE_MANAGER_NODE_ID": f"node-{name}"}
        base, log = h.start_node(f"node-{name}", binary, name, node_env)
        nodes[name] = {"base": base, "log": log, "dir": workdir / name}
    shell_env = base_env() | {"STATE_MANAGER_JWT_SECRET": secret,
                              "SM": nodes["a"]["base"], "SM2": nodes["b"]["base"]}
    return nodes, shell_env, [secret, s3_secret]


def run_step(ctx, step, show):
    """Run a step's commands (again, for a poll step, until it passes); raise Fail."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        ctx.step = step
        results = [ctx.shell.run(c.text) for c in step.commands]
        try:
            for c, r in zip(step.commands, results):
                check_command(c, r, show)
            steps.CHECKS[step.name](ctx, results)
            break
        except steps.Fail:
            if step.name not in steps.POLL or time.monotonic() > deadline:
                if show:
                    print_outputs(results)
                raise
            time.sleep(0.25)
    if show:
        print_outputs(results)
    return results


def check_command(c, r, show):
    """The exit code, and the shape of the output against its page's (only reported with
    `show`)."""
    # `timeout N curl -N ...` ends a stream the way Ctrl-C would: exit code 124.
    allowed = {0, 124} if "timeout " in c.text else {0}
    if r.rc not in allowed:
        raise steps.Fail(f"exit code of `{c.text}` (stderr: {r.stderr.strip()})", sorted(allowed), r.rc)
    want, got = pages.shape(c.output), pages.shape(r.stdout)
    if not pages.conforms(want, got):
        if show:
            print(f"SHAPE `{c.text}`: page {want.describe()}, real {got.describe()}")
            return
        missing, extra = sorted(want.required - got.required), sorted(got.allowed - want.allowed)
        diff = f"missing {missing}, not on the page {extra}"
        raise steps.Fail(f"shape of the output of `{c.text}` (page vs real: {diff})",
                         want.describe(), got.describe())


def print_outputs(results):
    for r in results:
        print(f"    $ {r.command}")
        for line in r.stdout.splitlines():
            print(f"    {line}")


def main():
    a = args()
    binary = Path(a.bin).resolve()
    if not binary.is_file():
        sys.exit(f"FAIL  no state-manager binary at {binary}: "
                 "build it with `cargo build --locked` or pass --bin")
    missing = [t for t in ("bash", "curl", "jq") if not shutil.which(t)]
    if missing:
        need = " ".join(missing)
        sys.exit(f"FAIL  the runbook needs {need} on PATH (apt-get install {need})")
    names = a.pages or pages.discover(REPO)
    try:
        book = load(names, complete=not a.pages)
    except (OSError, pages.PageError) as e:
        sys.exit(f"FAIL  {', '.join(names)}: {e}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="runbook-"))
    ok = False
    try:
        with harness.Harness(workdir) as h:
            ok = run(h, book, binary, workdir, a.show)
    except harness.HarnessError as e:
        print(f"FAIL  start: {e}")
    except KeyboardInterrupt:
        print("FAIL  interrupted")
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} (node and moto logs, data directories)")
    sys.exit(0 if ok else 1)


def run(h, book, binary, workdir, show):
    nodes, env, secret_values = start(h, book, binary, workdir)
    for name, text in book.files.items():
        (workdir / name).write_text(text)
    ctx = steps.Context(workdir, nodes, Shell(workdir, binary, env), secret_values)
    print(f"moto and two nodes up: SM={nodes['a']['base']} SM2={nodes['b']['base']}")
    for step in book.steps:
        start_at = time.monotonic()
        try:
            results = run_step(ctx, step, show)
        except steps.Fail as f:
            print(f"FAIL  {step.name} ({step.where()}): {f.what}")
            for c in step.commands:
                print(f"      command:  {c.text}")
            print(f"      expected: {f.expected}")
            print(f"      actual:   {f.actual}")
            return False
        took = time.monotonic() - start_at
        print(f"PASS  {step.name} ({len(results)} command(s), {took:.1f}s)")
    names = ", ".join(dict.fromkeys(s.page for s in book.steps))
    print(f"PASS  runbook: {len(book.steps)} steps from {names}")
    return True


if __name__ == "__main__":
    main()
