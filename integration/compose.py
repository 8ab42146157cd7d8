"""The compose deployment end to end, as docs/CONTAINERS.md writes it.

The shipped docker-compose.yml runs with podman-compose, with one override used only here
(integration/container/compose.override.yml: moto built locally instead of MinIO, which cannot
be had without a registry). Every step marked `<!-- container-step: NAME -->` in
docs/CONTAINERS.md (a `console` block, as the runbook's steps are: pages.py) is run with bash as
written, through the published ports (8081, 8082) with curl; `docker` on the
shell's PATH is a shim that runs `podman` and, for `docker compose`, podman-compose with the
shipped file and the override. Each step's output must keep the shape the document shows
(pages.py), and each step is checked for what it must do (CHECKS below), among them:
- node-a owns and node-b stands by, and `/readyz` says so on both through every handoff;
- after `release-lease`, node-b owns with node-a's env_dir restored byte for byte;
- a graceful stop of the owner (a rolling update's terminated pod) hands over to the standby
  with the data;
- a killed owner is taken over by the other node after the lease's TTL, not before.
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

import re

import pages
from image_checks import CheckFailed, expect
from images import REPO, log
from shell import Shell

DOC = REPO / "docs" / "CONTAINERS.md"
# Not the runbook's marker: these steps need podman, and make integration runs every page's
# runbook steps.
STEP = re.compile(r"^<!-- container-step: ([a-z0-9-]+) -->\s*$")
OVERRIDE = REPO / "integration" / "container" / "compose.override.yml"
COMPOSE = REPO / "docker-compose.yml"
# The shipped compose config's lease TTL (compose/config.json).
TTL = float(json.loads((REPO / "compose" / "config.json").read_text())["lease"]["ttl"].rstrip("s"))


class Run:
    """What the checks share: the shell, the compose command, facts kept between steps."""

    def __init__(self, shell, compose):
        self.shell, self.compose = shell, compose
        self.facts = {}

    def exec(self, service, command):
        """stdout of `command` run with sh in the container of `service`."""
        out = subprocess.run([*self.compose, "exec", "-T", service, "sh", "-c", command],
                             capture_output=True, text=True, env=self.shell.env, check=False)
        if out.returncode != 0:
            raise CheckFailed(f"exec in {service} failed: {out.stdout}{out.stderr}")
        return out.stdout

    def tree(self, service):
        """path -> sha256 of every file under the node's env_dir."""
        out = self.exec(service, "cd /data/env && find . -type f | sort | xargs -r sha256sum")
        return {path: digest for digest, path in (l.split() for l in out.splitlines())}

    def file(self, service, path):
        return self.exec(service, f"cat {path}")


def readyz(port):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{port}/readyz"], capture_output=True, text=True)
    return out.stdout


def check_up(run, res):
    expect(readyz(8081) == "200", "node-a owns: /readyz 200 on 8081")


def check_standby(run, res):
    detail = json.loads(res[-1].stdout)["detail"]
    expect("(role standby)" in detail and "owned by node-a" in detail,
           f"node-b stands by for node-a: {detail}")
    expect(readyz(8081) == "200", "node-a still ready")


def check_token(run, res):
    status = json.loads(res[-1].stdout)
    expect(status == {"role": "owner", "holder": "node-a"}, f"status with the token: {status}")


def check_checkpoint(run, res):
    cp = json.loads(res[-1].stdout)
    expect(cp["files"] >= 2, f"checkpoint of node-a's env_dir (the blob and ticks): {cp}")


def check_release(run, res):
    expect(json.loads(res[0].stdout)["released_epoch"] == 1, "node-a released epoch 1")
    expect(json.loads(res[1].stdout)["node_id"] == "node-b", "node-b is ready as the owner")
    # Released, or already a standby once it has seen node-b's lease: not ready either way.
    expect(any(f"(role {r})" in res[2].stdout for r in ("released", "standby")),
           f"node-a is not ready: {res[2].stdout.strip()}")
    a, b = run.tree("node-a"), run.tree("node-b")
    blob = a.get("./blob")
    expect(blob is not None and b.get("./blob") == blob, "the blob written on node-a is on node-b")
    same = {p for p in a if p != "./ticks" and b.get(p) == a[p]}
    expect(same == set(a) - {"./ticks"}, f"every other file of node-a's env_dir is on node-b ({sorted(a)})")
    a_ticks, b_ticks = run.file("node-a", "/data/env/ticks"), run.file("node-b", "/data/env/ticks")
    expect(b_ticks.startswith(a_ticks) and a_ticks,
           f"node-b's ticks go on from node-a's {len(a_ticks.splitlines())} lines")
    run.facts["ticks"], run.facts["blob"] = a_ticks, blob


def volume_file(volume, path):
    """A file of a compose volume, read on the host (its container may be stopped)."""
    root = subprocess.run(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}",
                           f"state-manager_{volume}"], capture_output=True, text=True, check=True)
    return (Path(root.stdout.strip()) / path).read_text()


def check_rollout(run, res):
    expect(json.loads(res[-1].stdout)["node_id"] == "node-a", "node-a owns again")
    code = subprocess.run(["podman", "inspect", "--format", "{{.State.ExitCode}}",
                           container(run, "node-b")], capture_output=True, text=True).stdout.strip()
    expect(code == "143", f"node-b exited 143 after its graceful stop ({code})")
    # node-b stopped its process before its final checkpoint: its ticks are that checkpoint's.
    final = volume_file("node-b-data", "env/ticks")
    expect(final.startswith(run.facts["ticks"]), "node-b's ticks go on from those it restored")
    expect(run.file("node-a", "/data/env/ticks").startswith(final),
           f"node-a's env_dir has every one of node-b's {len(final.splitlines())} ticks")
    expect(run.tree("node-a").get("./blob") == run.facts["blob"], "and the blob")
    run.facts["ticks"] = final


def check_failover(run, res):
    took = run.facts.pop("takeover_s")
    expect(json.loads(res[-1].stdout)["node_id"] == "node-b", "node-b owns after the kill")
    # node-a renewed at most TTL/3 before the kill, so its lease ran at least 2/3 TTL more.
    expect(took >= TTL * 2 / 3, f"node-b took over {took:.1f} s after the kill (lease TTL "
                                f"{TTL:.0f} s): after the lease expired, not before")
    # No checkpoint was taken since node-a's takeover: node-b restored the one node-b itself
    # took when it stopped (what node-a appended since is lost, as the document says).
    expect(run.file("node-b", "/data/env/ticks").startswith(run.facts["ticks"]),
           "node-b has every tick of the last checkpoint")
    expect(run.tree("node-b").get("./blob") == run.facts["blob"], "and the blob")


def check_down(run, res):
    left = subprocess.run(["podman", "ps", "-a", "--filter", "label=io.podman.compose.project=state-manager",
                           "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    expect(not left, f"no container is left ({left})")
    volumes = subprocess.run(["podman", "volume", "ls", "--filter", "label=io.podman.compose.project=state-manager",
                              "--format", "{{.Name}}"], capture_output=True, text=True).stdout.split()
    expect(not volumes, f"no volume is left ({volumes})")


CHECKS = {
    "compose-up": check_up,
    "compose-standby": check_standby,
    "compose-token": check_token,
    "compose-checkpoint": check_checkpoint,
    "compose-release": check_release,
    "compose-rollout": check_rollout,
    "compose-failover": check_failover,
    "compose-down": check_down,
}


def container(run, service):
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"label=com.docker.compose.service={service}",
                          "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    if len(out) != 1:
        raise CheckFailed(f"expected one container of {service}, found {out}")
    return out[0]


def before(run, name):
    """What a step needs done first that the document leaves to the reader."""
    if name == "compose-checkpoint":
        # Something worth restoring byte for byte besides the ticks.
        run.exec("node-a", "head -c 1048576 /dev/urandom > /data/env/blob")


def docker_shim(bin_dir, compose):
    shim = bin_dir / "docker"
    files = " ".join(f"'{a}'" for a in compose)
    shim.write_text(
        "#!/bin/sh\n"
        "# docs/CONTAINERS.md says `docker`; this machine has podman and podman-compose.\n"
        f'if [ "$1" = compose ]; then shift; exec {files} "$@"; fi\n'
        'exec podman "$@"\n'
    )
    shim.chmod(0o755)


def parse():
    """The marked steps of docs/CONTAINERS.md, in order."""
    page, lines = "docs/CONTAINERS.md", DOC.read_text().splitlines()
    steps = []
    for i, line in enumerate(lines):
        m = STEP.match(line)
        if not m:
            continue
        lang, body = pages.fenced_block(lines, i, page)
        if lang != "console":
            raise pages.PageError(f"{page} line {i + 1}: the step {m.group(1)!r} must be a ```console block")
        steps.append(pages.Step(m.group(1), page, i + 1, pages.console(body, page, i + 1)))
    return steps


def run_steps(workdir, podman_compose, s3_image, env):
    steps = parse()
    names = [s.name for s in steps]
    if names != list(CHECKS):
        raise pages.PageError(f"{DOC}: steps {names}, checks {list(CHECKS)}")
    compose = [podman_compose, "-f", str(COMPOSE), "-f", str(OVERRIDE)]
    env = env | {"STATE_MANAGER_TEST_S3_IMAGE": s3_image}
    Path(workdir).mkdir(parents=True)
    shell = Shell(workdir, shutil.which("false"), env)
    docker_shim(shell.workdir / ".bin", compose)
    run = Run(shell, compose)
    subprocess.run([*compose, "down", "-v"], env=shell.env, capture_output=True)
    try:
        for step in steps:
            log(f"step {step.name} (docs/CONTAINERS.md line {step.line})")
            before(run, step.name)
            results = []
            for cmd in step.commands:
                t0 = time.monotonic()
                r = shell.run(cmd.text)
                # The takeover time: from the kill to the end of the wait for node-b's 200.
                if cmd.text.startswith("docker compose kill"):
                    run.facts["kill_at"] = t0
                elif "kill_at" in run.facts:
                    run.facts["takeover_s"] = time.monotonic() - run.facts.pop("kill_at")
                if r.rc != 0:
                    raise CheckFailed(f"{step.name}: `{cmd.text}` exited {r.rc}\n{r.stdout}\n{r.stderr}")
                if cmd.output.strip():
                    want, got = pages.shape(cmd.output), pages.shape(r.stdout)
                    if not pages.conforms(want, got):
                        raise CheckFailed(f"{step.name}: `{cmd.text}` printed {got.describe()}, "
                                          f"the document shows {want.describe()}:\n{r.stdout}")
                results.append(r)
            CHECKS[step.name](run, results)
    except Exception:
        logs = subprocess.run([*compose, "logs"], env=shell.env, capture_output=True, text=True)
        print(logs.stdout[-20000:], logs.stderr[-5000:])
        raise
    finally:
        subprocess.run([*compose, "down", "-v"], env=shell.env, capture_output=True)
