"""What each runbook step must answer. The docs pages name the steps (`<!-- runbook: NAME -->`,
most of them on docs/RUNBOOK.md); every step there needs a check here and every check here a
step there, so neither can be dropped without the other.

A check gets the results of the step's commands (in page order) and the run's context (with the
step itself as the page shows it, `ctx.step`, for a check that compares whole outputs), and
raises `Fail` with what was expected and what came. Steps marked `poll` wait for something that
happens on its own (a role, a takeover): their commands are only reads and run again until the
check passes or the deadline is reached.
"""

import hashlib
import json
import os
import re
import stat
from pathlib import Path

CHECKS = {}
POLL = set()
ID = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$")


class Fail(Exception):
    def __init__(self, what, expected, actual):
        super().__init__(what)
        self.what, self.expected, self.actual = what, expected, actual


def step(name, poll=False):
    def register(f):
        CHECKS[name] = f
        if poll:
            POLL.add(name)
        return f

    return register


class Context:
    """What the steps share: the nodes (`a`, `b`: base URL, log file, data dir), the shell,
    and values found on the way."""

    def __init__(self, workdir, nodes, shell, secrets):
        self.workdir, self.nodes, self.shell, self.secrets = Path(workdir), nodes, shell, secrets
        self.values = {}
        self.step = None


# ---- helpers ------------------------------------------------------------------------------


def expect(what, expected, actual):
    if expected != actual:
        raise Fail(what, expected, actual)


def contains(what, needle, haystack):
    if needle not in haystack:
        raise Fail(what, f"something with {needle!r}", haystack)


def status(r, *codes):
    expect(f"HTTP status of `{r.command}`", list(codes), r.statuses)


def doc(r):
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise Fail(f"JSON from `{r.command}`", "a JSON document", r.stdout) from None


def lines(r):
    try:
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    except ValueError:
        raise Fail(f"JSON lines from `{r.command}`", "one JSON document per line", r.stdout) from None


def get(d, path):
    for part in path.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def fields(r, d, **want):
    """Each `a__b=value` compares `d["a"]["b"]`."""
    for key, value in want.items():
        expect(f"`{key.replace('__', '.')}` from `{r.command}`", value, get(d, key.replace("__", ".")))


def problem(r, code):
    status(r, code)
    fields(r, doc(r), status=code)


def tree(root):
    """Every entry under root: type, mode, content hash or link target."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            mode = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                what = f"link -> {os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                what = f"dir {mode}"
            else:
                what = f"file {mode} {hashlib.sha256(p.read_bytes()).hexdigest()}"
            out[str(p.relative_to(root))] = what
    return out


def log_has(ctx, node, text):
    log = ctx.nodes[node]["log"].read_text(errors="replace")
    if text not in log:
        raise Fail(f"node {node}'s own output", f"a line with {text!r}", log[-2000:])


# ---- tokens and the unconfigured node -----------------------------------------------------


@step("token")
def token(ctx, rs):
    env = ctx.shell.env
    for name in ("TOKEN", "READ"):
        expect(f"${name} after `{rs[0].command}`", 3, len(env.get(name, "").split(".")))
    expect("$H", f"Authorization: Bearer {env['TOKEN']}", env.get("H"))


@step("healthz")
def healthz(ctx, rs):
    status(rs[0], 200)
    expect("GET /healthz", {"status": "ok"}, doc(rs[0]))


@step("no-token")
def no_token(ctx, rs):
    status(rs[0], 401)
    contains("a WWW-Authenticate header", "www-authenticate: bearer", rs[0].stdout.lower())


@step("status-unconfigured")
def status_unconfigured(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), configured=False, role=None)


@step("invalid-config")
def invalid_config(ctx, rs):
    problem(rs[0], 422)
    paths = sorted(p.get("path") for p in doc(rs[0]).get("problems", []))
    expect("paths of the problems of bad.json",
           ["colour", "stacks[0].command", "stacks[1].stop_timeout", "storage.bucket"], paths)
    if "config.json" in rs[1].stdout.split():
        raise Fail("a rejected config is not written", "no a/config.json", rs[1].stdout)


@step("configure")
def configure(ctx, rs):
    status(rs[0], 201)
    fields(rs[0], doc(rs[0]), configured=True, processes=["web-1", "web-2", "worker"])


@step("status-owner", poll=True)
def status_owner(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), configured=True, role="owner", processes__running=3,
           lease__holder="node-a", lease__epoch=1)


@step("configure-standby")
def configure_standby(ctx, rs):
    status(rs[0], 201)
    fields(rs[0], doc(rs[0]), configured=True)


@step("status-standby", poll=True)
def status_standby(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), role="standby", lease__holder="node-a", lease__node_id="node-b")


@step("config-again")
def config_again(ctx, rs):
    problem(rs[0], 409)


@step("config-redacted")
def config_redacted(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), env__API_TOKEN="***")
    for secret in ctx.secrets:
        if secret in rs[0].stdout:
            raise Fail("GET /config shows no secret", "no secret value", rs[0].stdout)


# ---- processes, logs and events -----------------------------------------------------------


@step("processes")
def processes(ctx, rs):
    status(rs[0], 200)
    got = [(p.get("name"), p.get("state")) for p in lines(rs[0])]
    expect("web processes", [("web-1", "running"), ("web-2", "running")], got)


@step("process")
def process(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), name="worker", state="running")


@step("restart")
def restart(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), action="restart", processes=["web-1", "web-2"])


@step("stop")
def stop(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), action="stop", processes=["worker"])


@step("start")
def start(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), action="start", processes=["worker"])


@step("read-token")
def read_token(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), name="worker")
    problem(rs[1], 403)


@step("no-match")
def no_match(ctx, rs):
    problem(rs[0], 404)


def web_1_lines(r):
    got = [l.get("line") for l in lines(r)]
    if not got or not all(re.fullmatch(r"web 1 (up|tick)", l or "") for l in got):
        raise Fail(f"log lines from `{r.command}`", "lines `web 1 up` / `web 1 tick`", got)


@step("log-tail", poll=True)
def log_tail(ctx, rs):
    status(rs[0], 200)
    web_1_lines(rs[0])
    log_has(ctx, "a", "[web-1] web 1 up")


def sse(r, event):
    """The JSON data of each SSE event named `event`."""
    out, name = [], None
    for line in r.stdout.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name == event:
            out.append(json.loads(line[6:]))
    return out


@step("log-follow")
def log_follow(ctx, rs):
    got = sse(rs[0], "log")
    if not got or not all(l.get("line", "").startswith("web 1 ") for l in got):
        raise Fail("followed log lines", "at least one `event: log` of web-1", rs[0].stdout)


@step("events")
def events(ctx, rs):
    status(rs[0], 200)
    got = lines(rs[0])
    expect("processes of the events", {"worker"}, {e.get("process") for e in got})
    expect("the last event", "running", got[-1].get("to") if got else None)


@step("events-stream")
def events_stream(ctx, rs):
    got = sse(rs[0], "transition")
    expect("streamed transitions", "running", got[-1].get("to") if got else rs[0].stdout)


# ---- checkpoints, restore, the lease ------------------------------------------------------


@step("checkpoint")
def checkpoint(ctx, rs):
    r = rs[-1]
    status(r, 201)
    d = doc(r)
    fields(r, d, label="before-upgrade", files=2)
    if not ID.match(str(d.get("id"))):
        raise Fail("the checkpoint's id", "an id like 20261123T212712.142Z-c2a803bf", d.get("id"))
    ctx.values["checkpoint"] = d["id"]


@step("checkpoints")
def checkpoints(ctx, rs):
    status(rs[0], 200)
    ids = [c.get("id") for c in lines(rs[0])]
    contains("the listed checkpoints", ctx.values["checkpoint"], ids)


@step("restore")
def restore(ctx, rs):
    r = rs[1]
    status(r, 200)
    d = doc(r)
    fields(r, d, restored=ctx.values["checkpoint"])
    undo = str(d.get("undo_checkpoint"))
    if not ID.match(undo) or undo == ctx.values["checkpoint"]:
        raise Fail("the undo checkpoint", "the id of a new checkpoint", undo)
    expect("settings.json after the restore", '{"v":1}\n', rs[2].stdout)


def has_samples(r, *samples):
    """A 200 metrics answer with each of `samples` as one of its lines."""
    status(r, 200)
    for sample in samples:
        contains("the metrics", sample, r.stdout.splitlines())


@step("metrics", poll=True)
def metrics(ctx, rs):
    has_samples(rs[0], 'state_manager_lease_role{role="owner"} 1', "state_manager_lease_epoch 1",
                'state_manager_process_up{process="worker"} 1')


@step("release-lease")
def release_lease(ctx, rs):
    status(rs[0], 200)
    d = doc(rs[0])
    fields(rs[0], d, released_epoch=1)
    if not ID.match(str(get(d, "final_checkpoint.id"))):
        raise Fail("the final checkpoint", "a checkpoint with an id", d.get("final_checkpoint"))
    ctx.values["handed_over"] = tree(ctx.nodes["a"]["dir"] / "env")


@step("takeover", poll=True)
def takeover(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), role="owner", lease__holder="node-b", lease__epoch=2)
    expect("settings.json on node-b", '{"v":1}\n', rs[1].stdout)
    restored = tree(ctx.nodes["b"]["dir"] / "env")
    expect("node-b's env_dir, byte for byte", ctx.values["handed_over"], restored)


@step("status-after-release", poll=True)
def status_after_release(ctx, rs):
    status(rs[0], 200)
    fields(rs[0], doc(rs[0]), role="standby", lease__holder="node-b", lease__node_id="node-a")


@step("logs-after-takeover", poll=True)
def logs_after_takeover(ctx, rs):
    status(rs[0], 200)
    web_1_lines(rs[0])
    log_has(ctx, "b", "[web-1] web 1 up")


@step("metrics-after-takeover", poll=True)
def metrics_after_takeover(ctx, rs):
    has_samples(rs[0], 'state_manager_lease_role{role="owner"} 1', "state_manager_lease_epoch 2",
                "state_manager_lease_acquisitions_total 1")


@step("unknown-path")
def unknown_path(ctx, rs):
    problem(rs[0], 404)


# ---- the process set from the command line ------------------------------------------------


def revision_line(r):
    """The revision on the last line of a ctl change's answer."""
    last = (r.stdout.strip().splitlines() or [""])[-1]
    m = re.search(r"revision (\d+)\)?$", last)
    if not m:
        raise Fail(f"the revision from `{r.command}`", "a last line `revision N`", r.stdout)
    return int(m.group(1))


@step("ctl-apply")
def ctl_apply(ctx, rs):
    plan = ["+ cron", "~ worker: command", "= 1 unchanged"]
    expect(f"the plan from `{rs[1].command}`", plan, rs[1].stdout.splitlines()[:3])
    contains("a dry run", "dry run: nothing was changed", rs[1].stdout)
    expect(f"the plan from `{rs[2].command}`", plan, rs[2].stdout.splitlines()[:3])
    ctx.values["revision"] = revision_line(rs[2])
    expect("the reload's revision", revision_line(rs[1]) + 1, ctx.values["revision"])
    expect("node-b's config file", (ctx.workdir / "config-v2.json").read_text(),
           (ctx.nodes["b"]["dir"] / "config.json").read_text())


@step("ctl-add")
def ctl_add(ctx, rs):
    expect(f"`{rs[0].command}`", ["added extra: extra-1, extra-2", "started extra-1, extra-2"],
           rs[0].stdout.splitlines()[:2])
    expect("the revision", ctx.values["revision"] + 1, revision_line(rs[0]))


@step("ctl-scale")
def ctl_scale(ctx, rs):
    expect(f"`{rs[0].command}`", ["scaled extra to 3", "started extra-3", "stopped -"],
           rs[0].stdout.splitlines()[:3])
    expect("the revision", ctx.values["revision"] + 2, revision_line(rs[0]))


@step("ctl-rm")
def ctl_rm(ctx, rs):
    expect(f"`{rs[0].command}`", ["removed extra"], rs[0].stdout.splitlines()[:1])
    expect("the revision", ctx.values["revision"] + 3, revision_line(rs[0]))
    expect("the processes left", ["web-1", "web-2", "worker", "cron"], rs[1].stdout.split())


# ---- docs/API.md --------------------------------------------------------------------------


@step("openapi-paths")
def openapi_paths(ctx, rs):
    """The list of paths is shown whole, so it is compared whole: a route added or removed
    without the page fails here."""
    status(rs[0], 200)
    try:
        shown = json.loads(ctx.step.commands[0].output)
    except ValueError:
        raise Fail(f"the paths shown on {ctx.step.where()}", "a JSON array", ctx.step.commands[0].output) from None
    expect("the paths of GET /openapi.json against the page's list", shown, doc(rs[0]))
