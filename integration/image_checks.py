"""Checks of our image as it runs: one container started like a user starts it, then asked.

- it starts as PID 1 (`/proc/1` is state-manager serve), as the non-root user 10001, and keeps
  its state under the `/data` volume;
- orphans are reaped: a burst of processes whose parents exit is reparented to PID 1 inside the
  container, and none of them is left a zombie;
- the image's own HEALTHCHECK (run by `podman healthcheck run`) passes while the API answers and
  fails while it cannot (PID 1 stopped with SIGSTOP from the host, then continued);
- `podman stop` ends it gracefully: exit code 143 (SIGTERM), the shutdown steps in the log, the
  lease released, its process stopped by its own SIGTERM handler (exit code 0, not killed);
- the image size and the time from `podman run` to a healthy API, reported for BENCHMARKS.md.
"""

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request

from images import IMAGE, log, podman

NAME = "sm-ct-image"
VOLUME = "sm-ct-image-data"
DEADLINE = 60.0
CONFIG = {
    "stacks": [{
        "name": "worker",
        "command": "sh",
        "args": ["-c", "trap 'echo worker got SIGTERM; exit 0' TERM; echo worker up; "
                       "while :; do date -u >> /data/env/ticks; sleep 1 & wait $!; done"],
        "stop_timeout": "10s",
    }],
}
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CheckFailed(Exception):
    pass


# Checks passed so far (for the closing `N passed, N failed` line).
PASSED = [0]


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)
    PASSED[0] += 1
    log(f"ok: {what}")


def wait_for(what, cond, deadline=DEADLINE):
    """Poll `cond` until it returns something true; that value, or CheckFailed at the deadline."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.05)


def http_status(url):
    try:
        with DIRECT.open(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def sh(command):
    """Run `command` with sh inside the container; its stdout."""
    return podman("exec", NAME, "sh", "-c", command, capture=True)


def processes():
    """(pid, ppid, state, name) of every process in the container."""
    out = sh("for s in /proc/[0-9]*/stat; do cat $s 2>/dev/null; echo; done")
    rows = []
    for line in out.splitlines():
        if not line.strip():
            continue
        pid, rest = line.split(" (", 1)
        name, fields = rest.rsplit(") ", 1)
        state, ppid = fields.split()[:2]
        rows.append((int(pid), int(ppid), state, name))
    return rows


def cleanup():
    podman("rm", "-f", "-t", "0", NAME, check=False, capture=True)
    podman("volume", "rm", "-f", VOLUME, check=False, capture=True)


def start(config_dir):
    (config_dir / "config.json").write_text(json.dumps(CONFIG))
    (config_dir / "config.json").chmod(0o644)
    t0 = time.monotonic()
    podman("run", "-d", "--name", NAME, "-p", "127.0.0.1::8080",
           "-e", f"STATE_MANAGER_JWT_SECRET={secrets.token_hex(32)}",
           "-e", "STATE_MANAGER_CONFIG=/etc/state-manager/config.json",
           "-v", f"{config_dir}/config.json:/etc/state-manager/config.json:ro",
           "-v", f"{VOLUME}:/data", IMAGE, capture=True)
    port = podman("port", NAME, "8080", capture=True).rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}"
    wait_for("GET /healthz through the published port", lambda: http_status(f"{url}/healthz") == 200)
    return url, time.monotonic() - t0


def check_pid1_user_and_data():
    cmdline = sh("tr '\\0' ' ' < /proc/1/cmdline")
    expect(cmdline.split()[:2] == ["state-manager", "serve"], f"PID 1 is `{cmdline.strip()}`")
    uid = sh("grep ^Uid: /proc/1/status").split()[1:]
    expect(uid and all(u == "10001" for u in uid), f"PID 1 runs as uid 10001 (Uid: {uid})")
    wait_for("the worker's first tick under /data/env", lambda: sh("cat /data/env/ticks 2>/dev/null"))
    listing = sh("stat -c '%u %n' /data/state.db /data/env/ticks")
    expect(all(l.startswith("10001 ") for l in listing.splitlines()),
           f"the state database and env_dir are under /data, owned by 10001:\n{listing}")
    mount = podman("inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}",
                   NAME, capture=True)
    expect(f"/data={VOLUME}" in mount.split(), f"/data is the named volume ({mount})")


def check_reaping():
    before = processes()
    # 40 orphans: each `sh -c` leaves a `sleep 2` behind and exits at once.
    sh("i=0; while [ $i -lt 40 ]; do sh -c 'sleep 2 & exit 0'; i=$((i+1)); done")
    orphans = [p for p in processes() if p[3] == "sleep" and p[1] == 1]
    expect(len(orphans) >= 20, f"{len(orphans)} orphaned sleeps were reparented to PID 1")
    def settled():
        rows = processes()
        zombies = [p for p in rows if p[2] == "Z"]
        left = [p for p in rows if p[3] == "sleep" and p[1] == 1]
        return (not zombies and not left) and rows
    rows = wait_for("every orphan to exit and be reaped", settled, deadline=30)
    expect(not [p for p in rows if p[2] == "Z"],
           f"no zombies after the burst ({len(rows)} processes, {len(before)} before)")


def check_healthcheck():
    cfg = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE, capture=True)
    expect("ctl" in cfg and "health" in cfg, f"the image has its HEALTHCHECK: {cfg}")
    expect(podman("healthcheck", "run", NAME, check=False) == 0,
           "HEALTHCHECK passes while the API answers")
    pid = podman("inspect", "--format", "{{.State.Pid}}", NAME, capture=True)
    subprocess.run(["kill", "-STOP", pid], check=True)
    try:
        out = subprocess.run(["podman", "healthcheck", "run", NAME], capture_output=True,
                             text=True, timeout=60)
        expect(out.returncode != 0,
               f"HEALTHCHECK fails while PID 1 is stopped (exit {out.returncode}: "
               f"{(out.stdout + out.stderr).strip()})")
    finally:
        subprocess.run(["kill", "-CONT", pid], check=True)
    wait_for("HEALTHCHECK to pass again",
             lambda: podman("healthcheck", "run", NAME, check=False) == 0)
    log("ok: HEALTHCHECK passes again once PID 1 continues")


def check_graceful_stop():
    t0 = time.monotonic()
    podman("stop", "-t", "60", NAME, capture=True)
    took = time.monotonic() - t0
    code = podman("inspect", "--format", "{{.State.ExitCode}}", NAME, capture=True)
    expect(code == "143", f"`podman stop` ends it with exit code 143 (SIGTERM) in {took:.1f} s, "
                          "well inside the 60 s grace")
    logs = podman("logs", NAME, capture=True, stderr=subprocess.STDOUT)
    for line in ("shutting down: no new requests", "worker got SIGTERM",
                 "released the lease at shutdown", "stopping every process"):
        expect(line in logs, f"the log says `{line}`")
    worker = [l for l in logs.splitlines() if '"process":"worker"' in l and '"to":"stopped"' in l]
    expect(worker and "stopped (exit code 0)" in worker[-1],
           f"the worker ended by its own handler, not killed: {worker[-1:]}")


def size_mb():
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE, capture=True))
    return size / 1e6


def run_all(workdir):
    """Every check above; returns the figures (image size, seconds to healthy)."""
    cleanup()
    try:
        url, to_healthy = start(workdir)
        log(f"healthy {to_healthy:.2f} s after `podman run` ({url})")
        check_pid1_user_and_data()
        check_reaping()
        check_healthcheck()
        check_graceful_stop()
    except Exception:
        print(podman("logs", NAME, check=False, capture=True, stderr=subprocess.STDOUT))
        raise
    finally:
        cleanup()
    return {"image_mb": round(size_mb(), 1), "seconds_to_healthy": round(to_healthy, 2)}
