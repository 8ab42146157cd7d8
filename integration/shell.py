"""Runs runbook commands with bash the way a user types them into one shell.

Each command runs in the runbook's working directory; what it exports (TOKEN, H, …) is kept for
the commands after it, as in an interactive shell. `curl` and `state-manager` are the real
programs: the PATH starts with a directory holding a link to the binary under test and a `curl`
that runs the real curl with the same arguments plus `-w` writing the HTTP status of each
transfer to stderr, so that the status is checked without changing what the command prints.
"""

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STATUS_PREFIX = "runbook-http-status: "
COMMAND_TIMEOUT = 180
# Set by bash itself; not part of what a command exported.
BASH_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}


@dataclass
class Result:
    command: str
    rc: int
    stdout: str
    stderr: str
    statuses: list
    seconds: float


class Shell:
    def __init__(self, workdir, binary, env):
        self.workdir = Path(workdir)
        tools = self.workdir / ".bin"
        tools.mkdir()
        real_curl = shutil.which("curl")
        if not real_curl:
            raise RuntimeError("the runbook needs curl on PATH (apt-get install curl)")
        wrapper = tools / "curl"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec {real_curl} \"$@\" -w '%{{stderr}}{STATUS_PREFIX}%{{http_code}}\\n'\n"
        )
        wrapper.chmod(0o755)
        (tools / "state-manager").symlink_to(Path(binary).resolve())
        self.env = dict(env)
        self.env["PATH"] = f"{tools}:{env.get('PATH', '/usr/bin:/bin')}"
        self.state = self.workdir / ".env"

    def run(self, command):
        """Run one command; its exports carry over to the next one."""
        script = f"{command}\n__rc=$?\nenv -0 > {self.state}\nexit $__rc\n"
        start = time.monotonic()
        child = subprocess.Popen(
            ["bash", "-c", script], cwd=self.workdir, env=self.env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = child.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            err += f"\n(killed after {COMMAND_TIMEOUT} s)"
        finally:
            # Interrupted (Ctrl-C): the command and whatever it started go too.
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.load_exports()
        statuses = [int(l[len(STATUS_PREFIX):]) for l in err.splitlines() if l.startswith(STATUS_PREFIX)]
        err = "\n".join(l for l in err.splitlines() if not l.startswith(STATUS_PREFIX))
        return Result(command, child.returncode, out, err, statuses, time.monotonic() - start)

    def load_exports(self):
        try:
            raw = self.state.read_bytes()
        except FileNotFoundError:
            return
        self.state.unlink()
        env = {}
        for item in raw.decode(errors="replace").split("\0"):
            name, sep, value = item.partition("=")
            if sep and name not in BASH_OWN:
                env[name] = value
        self.env = env
