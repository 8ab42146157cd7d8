#!/usr/bin/env python3
"""The console (GET /ui) in a real browser, against a real node with real processes.

It starts `state-manager serve` (local storage, five processes) and headless Chromium driven by
Selenium, then checks what an operator does: sign in with a pasted token; the table shows the
processes; Stop on a row stops the process (checked through the API) and the row changes with
no reload; a crash shows up live; the log panel shows lines printed after the page opened, and
pauses and searches; keyboard moves through the rows and dialogs; a glob filter and a restart of
the selection; a stack added from the page (a 422's field problems shown first), scaled up and
down, and removed (its dependant named by the 409, then removed anyway), each checked through the
API, with the table following the event stream (a stack added through the API appears too); a
checkpoint, a restore (the restored file checked on disk) and a delete from the page; with a
read token every control is disabled and a call forced past them is refused; the
lease released from the page; the CSP header is there; the browser logs no error; no
token appears in the server's log, a URL or a cookie.

    integration/console.py [--bin target/debug/state-manager] [--screenshots docs/]

Needs chromium and chromedriver (Debian: chromium, chromium-driver) and selenium (the Makefile's
venv). With --screenshots, a desktop and a phone view are saved there. The node and the browser
are always stopped; on failure the working directory (node log, screenshot) is kept and named.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness
from browser import Browser, Fail
from selenium.webdriver.common.keys import Keys

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 60.0

CONFIG = {
    "node_id": "console-test",
    "stop_timeout": "5s",
    "restart_delay": "300ms",
    "lease": {"ttl": "10s", "poll_interval": "1s"},
    "stacks": [
        {"name": "web", "instances": 2, "command": "sh",
         "args": ["-c", "echo web {instance} up; while :; do echo web {instance} tick; sleep 1; done"]},
        {"name": "worker", "command": "sleep 100000"},
        # Exits with code 3 when the test drops a file named crash-now in its directory.
        {"name": "crasher", "command": "sh", "cwd": "{work}",
         "args": ["-c", "while [ ! -e crash-now ]; do sleep 0.1; done; rm -f crash-now; exit 3"]},
        # Prints the content of a file named say (then removes it) when the test writes one; the
        # one process with a probe.
        {"name": "talker", "command": "sh", "cwd": "{work}",
         "args": ["-c", "while :; do if [ -e say ]; then cat say; rm -f say; fi; sleep 0.1; done"],
         "readiness": {"exec": ["true"], "period": "200ms"}},
    ],
}


def args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=os.environ.get("STATE_MANAGER_BIN", "target/debug/state-manager"))
    p.add_argument("--screenshots", type=Path, help="save console-desktop.png and console-phone.png here")
    return p.parse_args()


class Api:
    """The node's API, as the test checks it (never through the page)."""

    def __init__(self, base, token):
        self.base, self.token = base, token

    def get(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        with harness.DIRECT.open(req, timeout=30) as r:
            return json.load(r)

    def process(self, name):
        return self.get(f"/processes/{name}")

    def send(self, method, path, body=None):
        """`method path` with a JSON body: (status, the parsed answer or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with harness.DIRECT.open(req, timeout=60) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def state(self, name):
        """The state of `name`, or None when the API does not know it (404)."""
        code, p = self.send("GET", f"/processes/{name}")
        if code == 404:
            return None
        if code != 200:
            raise Fail(f"GET /processes/{name}: {code} {p}")
        return p["state"]

    def names(self):
        return [p["name"] for p in self.get("/processes")]


def wait(what, cond, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise Fail(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(0.1)


def mint(binary, env, scope):
    out = subprocess.run([str(binary), "token", "--scope", scope, "--sub", f"{scope}-operator", "--ttl", "1h"],
                         env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def start_node(h, binary, work):
    config = json.loads(json.dumps(CONFIG).replace("{work}", str(work)))
    (work / "data").mkdir()
    (work / "data" / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATE_MANAGER_")}
    env["STATE_MANAGER_JWT_SECRET"] = secrets.token_hex(32)
    env["STATE_MANAGER_USAGE_INTERVAL"] = "1s"
    base, log = h.start_node("node", binary, "data", env)
    return base, log, env


def run(opts, work):
    binary = Path(opts.bin).resolve()
    with harness.Harness(work) as h:
        base, log, env = start_node(h, binary, work)
        admin, read = mint(binary, env, "admin"), mint(binary, env, "read")
        api = Api(base, admin)
        wait("the node to own the lease and run its processes",
             lambda: api.get("/")["role"] == "owner" and api.process("talker")["state"] == "running")
        with Browser(work) as b:
            checks(b, api, base, work, admin, read, opts.screenshots)
        text = log.read_text(errors="replace")
        for t in (admin, read):
            if t in text or t.split(".")[2] in text:
                raise Fail("a token was written to the server's log")


def checks(b, api, base, work, admin, read, shots):
    started = time.monotonic()
    headers = harness.DIRECT.open(base + "/ui", timeout=30).headers  # no token needed
    csp = headers.get("Content-Security-Policy", "")
    if "script-src 'self'" not in csp or "unsafe" in csp or headers.get("X-Frame-Options") != "DENY":
        raise Fail(f"the page's security headers: CSP {csp!r}, X-Frame-Options {headers.get('X-Frame-Options')!r}")

    b.open(base + "/ui")
    b.sign_in(admin)
    b.wait_text("who", "admin")
    names = ["web-1", "web-2", "worker", "crasher", "talker"]
    for n in names:
        b.wait_cell(n, "State", "running")
    # Healthy only where a probe says so; a process without one is just running.
    b.wait_cell("talker", "Health", "healthy")
    b.wait_cell("worker", "Health", "–")
    b.mark_page()
    step("sign in; the table shows the processes, healthy where a probe says so", started)

    b.click_row_button("worker", "Stop")
    wait("worker stopped, through the API", lambda: api.process("worker")["state"] == "stopped")
    b.wait_cell("worker", "State", "stopped")
    b.wait_cell("worker", "PID", "–")
    b.click_row_button("worker", "Start")
    b.wait_cell("worker", "State", "running")
    b.assert_same_page()
    step("stop and start from a row; the row follows with no reload", started)

    before = api.process("crasher")["restarts"]
    (work / "crash-now").touch()
    b.wait_cell("crasher", "Last exit", "code 3")
    wait("crasher restarted, through the API", lambda: api.process("crasher")["restarts"] > before)
    b.wait_cell("crasher", "Restarts", str(before + 1))
    b.wait_cell("crasher", "State", "running")
    b.assert_same_page()
    step("a crash shows up live", started)

    b.wait_cell("talker", "Memory", lambda t: t.endswith("iB"))
    b.wait_cell("talker", "CPU", lambda t: t.endswith("%"))
    step("CPU and memory of each row", started)

    b.click_row_button("talker", "Logs")
    b.wait_text("log-state", "following talker")
    said = f"hello from the test {secrets.token_hex(4)}"
    (work / "say").write_text(said + "\n")
    b.wait_log_line(said)
    b.click("log-pause")
    held = f"held back {secrets.token_hex(4)}"
    (work / "say").write_text(held + "\n")
    b.wait_text("log-count", "1 new held back")
    if b.log_lines_containing(held):
        raise Fail("a paused panel showed a new line")
    b.click("log-pause")
    b.wait_log_line(held)
    b.type("log-search", "hello from")
    shown = b.visible_log_lines()
    if not shown or not all("hello from" in l for l in shown):
        raise Fail(f"search shows {shown}")
    b.clear("log-search")
    step("the log panel: a line printed after the page opened; pause; search", started)

    b.keyboard_through_rows(names)
    step("keyboard: rows and selection", started)

    b.type("filter", "web-[12]")
    b.wait_shown_rows(["web-1", "web-2"])
    pids = {n: api.process(n)["pid"] for n in names}
    b.click("pick-all")
    b.wait_text("selected", "2 selected")
    b.click_bulk("restart")
    b.wait_notice("restarted web-1, web-2")
    wait("web-1 and web-2 restarted, through the API",
         lambda: all(api.process(n)["state"] == "running" and api.process(n)["pid"] != pids[n]
                     for n in ("web-1", "web-2")))
    for n in ("web-1", "web-2"):
        b.wait_cell(n, "PID", str(api.process(n)["pid"]))
    if api.process("worker")["pid"] != pids["worker"]:
        raise Fail("restarting the filtered selection restarted worker too")
    b.click("pick-all")
    b.wait_text("selected", "none selected")
    b.type("filter", "web-[")
    b.wait_text("filter-help", "not a glob")
    b.clear("filter")
    b.wait_shown_rows(names)
    step("filter by glob; restart the selection", started)

    stacks(b, api, names, started)

    env_file = Path(api.get("/config").get("storage", {}).get("env_dir") or work / "data" / "env") / "state.txt"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("before\n")
    label = f"from-the-page-{secrets.token_hex(3)}"
    b.click("checkpoint-create")
    b.wait_dialog("Take a checkpoint")
    b.type("checkpoint-label", label)
    b.click("dialog-ok")
    b.wait_notice("taken")
    listed = api.get("/checkpoints")["checkpoints"]
    ours = [c for c in listed if c.get("label") == label]
    if not ours:
        raise Fail(f"no checkpoint labelled {label} in GET /checkpoints")
    cid = ours[0]["id"]
    b.wait_checkpoint(cid)
    env_file.write_text("after\n")
    b.click_checkpoint_button(cid, "Restore")
    text = b.wait_dialog("Restore")
    if "web-1" not in text or "talker" not in text:
        raise Fail(f"the restore dialog does not name what it stops: {text!r}")
    b.press_escape()
    b.wait_dialog_closed()
    if env_file.read_text() != "after\n":
        raise Fail("Escape restored anyway")
    b.click_checkpoint_button(cid, "Restore")
    b.wait_dialog("Restore")
    b.click("dialog-ok")
    b.wait_notice("Restored")
    wait("the restored file", lambda: env_file.read_text() == "before\n")
    for n in names:
        b.wait_cell(n, "State", "running")
    step("a checkpoint and a restore from the page", started)

    b.click_checkpoint_button(cid, "Delete")
    if cid not in b.wait_dialog("Delete"):
        raise Fail("the delete dialog does not name the checkpoint")
    b.click("dialog-ok")
    b.wait_notice(f"Deleted checkpoint {cid}")
    if any(c["id"] == cid for c in api.get("/checkpoints")["checkpoints"]):
        raise Fail(f"checkpoint {cid} is still in GET /checkpoints")
    b.until(f"checkpoint {cid} gone from the list", lambda: cid not in b.checkpoint_ids())
    step("delete a checkpoint from the page", started)

    for n in names:
        b.wait_cell(n, "CPU", lambda t: t.endswith("%"))
    b.views(shots)
    step("desktop and phone layouts" + (f", saved in {shots}" if shots else ""), started)
    b.assert_no_console_errors()
    b.assert_token_only_in_session_storage(admin)

    b.sign_out()
    b.sign_in(read)
    b.wait_text("who", "read")
    b.wait_cell("worker", "State", "running")
    disabled = b.admin_controls()
    if not disabled or not all(d for _, d in disabled):
        raise Fail(f"with a read token, controls left enabled: {[n for n, d in disabled if not d]}")
    if not b.visible("read-only"):
        raise Fail("the read-only banner is not shown")
    b.assert_no_console_errors()
    b.force_click_row_button("worker", "Stop")
    b.wait_notice("admin")
    if api.process("worker")["state"] != "running":
        raise Fail("a forced call with a read token stopped the process")
    b.force_click_row_button("worker", "Remove")
    if "although the config file declares it" not in b.wait_dialog("Remove worker"):
        raise Fail("the remove dialog of a file stack does not say it stays removed")
    b.click("dialog-ok")
    b.wait_dialog_error("admin")
    b.click("dialog-cancel")
    b.wait_dialog_closed()
    b.force_click("process-add")
    b.wait_dialog("Add a process")
    b.click("dialog-ok")
    b.wait_dialog_error("admin")
    b.press_escape()
    b.wait_dialog_closed()
    if api.state("worker") != "running" or api.state("hello") is not None:
        raise Fail("a forced change of the process set with a read token was carried out")
    b.assert_no_console_errors(allowed="status of 403")
    step("read token: controls disabled, forced calls refused", started)

    b.sign_out()
    b.sign_in(admin)
    b.click("lease-release")
    text = b.wait_dialog("Release the lease")
    if "stop" not in text.lower():
        raise Fail(f"the release dialog does not say what it stops: {text!r}")
    b.click("dialog-ok")
    b.wait_notice("Released the lease")
    wait("the lease released, through the API", lambda: api.get("/")["role"] != "owner")
    wait("the processes stopped, through the API", lambda: api.process("worker")["state"] != "running")
    b.wait_text("node", "released")
    b.assert_no_console_errors()
    step("release the lease from the page", started)


def stacks(b, api, names, started):
    """Add, scale and remove a stack from the page, each checked through the API; the table
    follows the event stream, also for a stack added through the API."""
    b.press("process-add", Keys.ENTER)
    b.wait_dialog("Add a process")
    example = b.value("process-spec")
    b.type("process-spec", '{"name": "bad name", "command": "sh", "depends_on": ["nope"]}')
    b.click("dialog-ok")
    shown = b.wait_dialog_error("problem")
    if "name" not in shown or "depends_on" not in shown:
        raise Fail(f"the add dialog does not show each field's problem: {shown!r}")
    if api.names() != names:
        raise Fail("an invalid spec changed the process set")
    b.type("process-spec", example)
    b.press("process-spec", Keys.CONTROL, Keys.ENTER)
    b.wait_dialog_closed()
    b.wait_notice("Added hello (hello): started hello")
    wait("hello running, through the API", lambda: api.state("hello") == "running")
    b.wait_cell("hello", "State", "running")
    b.wait_shown_rows(names + ["hello"])
    step("add a process from the page (its example; a 422's problems shown first)", started)

    b.click_row_button("hello", "Scale")
    b.wait_dialog("Scale hello")
    b.type("scale-instances", "2")
    b.click("dialog-ok")
    b.wait_notice("Scaled hello to 2: started hello-1, hello-2; stopped hello")
    wait("hello-1 and hello-2 running and hello gone, through the API",
         lambda: api.state("hello-1") == api.state("hello-2") == "running" and api.state("hello") is None)
    b.wait_shown_rows(names + ["hello-1", "hello-2"])
    kept = api.process("hello-1")["pid"]
    b.click_row_button("hello-2", "Scale")
    text = b.wait_dialog("Scale hello")
    if "hello-1, hello-2" not in text:
        raise Fail(f"the scale dialog does not name the instances: {text!r}")
    b.type("scale-instances", "1")
    b.press("scale-instances", Keys.ENTER)
    b.wait_notice("Scaled hello to 1: stopped hello-2")
    wait("hello-2 gone, through the API", lambda: api.state("hello-2") is None)
    if api.process("hello-1")["pid"] != kept:
        raise Fail("scaling down touched hello-1")
    b.wait_shown_rows(names + ["hello-1"])
    step("scale a stack up to 2 and back to 1", started)

    code, added = api.send("POST", "/processes",
                           {"name": "greeter", "command": "sleep 100000", "depends_on": ["hello"]})
    if code != 201:
        raise Fail(f"POST /processes greeter: {code} {added}")
    b.wait_cell("greeter", "State", "running")
    b.assert_same_page()
    b.click_row_button("hello-1", "Remove")
    text = b.wait_dialog("Remove hello?")
    if "hello-1" not in text:
        raise Fail(f"the remove dialog does not name the instances: {text!r}")
    b.click("dialog-ok")
    shown = b.wait_dialog_error("greeter")
    if "depend(s) on" not in shown or "Stacks that depend on hello: greeter." not in shown or "null" in shown:
        raise Fail(f"the refused remove shows {shown!r}, not the API's detail and the dependants")
    if b.by_id("dialog-ok").text != "Remove anyway":
        raise Fail(f"a 409 with dependants offers {b.by_id('dialog-ok').text!r}, not Remove anyway")
    if api.state("hello-1") != "running":
        raise Fail("a refused remove stopped hello-1")
    b.click("dialog-ok")
    b.wait_dialog_closed()
    b.wait_notice("Removed hello (hello-1), although greeter depends on it")
    wait("hello-1 gone, through the API", lambda: api.state("hello-1") is None)
    b.wait_shown_rows(names + ["greeter"])
    if api.state("greeter") != "running":
        raise Fail("removing hello anyway stopped its dependant")
    b.click_row_button("greeter", "Remove")
    b.wait_dialog("Remove greeter?")
    b.click("dialog-ok")
    b.wait_dialog_closed()
    b.wait_notice("Removed greeter (greeter).")
    wait("greeter gone, through the API", lambda: api.state("greeter") is None)
    b.wait_shown_rows(names)
    b.assert_same_page()
    b.assert_no_console_errors(allowed=("status of 409", "status of 422"))
    step("remove stacks from the page (a dependant named, then removed anyway)", started)


def step(what, started):
    print(f"ok  {time.monotonic() - started:5.1f}s  {what}", flush=True)


def main():
    opts = args()
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install chromium chromium-driver")
    work = Path(tempfile.mkdtemp(prefix="sm-console-"))
    t0 = time.monotonic()
    try:
        run(opts, work)
    except (Fail, harness.HarnessError) as e:
        print(f"FAIL: {e}\n(kept {work}: node.log, failure.png)", file=sys.stderr)
        sys.exit(1)
    print(f"console: every check passed in {time.monotonic() - t0:.1f}s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
