#!/usr/bin/env python3
"""`make container-test`: the image really runs, and so does the compose deployment.

Makes the local base images (images.py, cached by content stamp), builds our image from the
Dockerfile with podman, checks it as it runs (image_checks.py), then runs the compose
deployment of docs/CONTAINERS.md step by step (compose.py). Prints the timings of each part
and the image's figures at the end.

    integration/containers.py --binary target/debug/state-manager [--podman-compose PATH]
    integration/containers.py --full-build dev|release [--podman-compose PATH] [--skip-compose]

With `--binary` (what `make container-test` and CI run), the image is the Dockerfile's
`runtime` stage around that binary, built by the host; with `--full-build`, the whole
Dockerfile, its builder stage compiling the binary in that cargo profile (every dependency
compiled again unless target/ holds them with the same features: over an hour on 2 cores).

Needs root and podman configured as docs/CONTAINERS.md says (.ci/run does it). Everything it
starts is removed at the end, also on failure; on failure the working directory is kept.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import compose
import image_checks
import images
import runbook


def args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--binary", help="the host's state-manager, put into the runtime stage")
    how.add_argument("--full-build", choices=("dev", "release"), metavar="PROFILE",
                     help="build the whole Dockerfile, the binary in this cargo profile")
    p.add_argument("--podman-compose", default=shutil.which("podman-compose") or "podman-compose")
    p.add_argument("--skip-compose", action="store_true", help="only build and check the image")
    return p.parse_args()


def main():
    a = args()
    images.require()
    timings = {}
    t = time.monotonic()
    base = images.debian_base()
    rust = images.builder(base) if a.full_build else None
    s3 = None if a.skip_compose else images.moto(base)
    timings["base images"] = time.monotonic() - t
    if a.full_build:
        timings["our image"] = images.full(base, rust, a.full_build)
        kind = f"whole Dockerfile, {a.full_build}"
    else:
        timings["our image"] = images.prebuilt(base, a.binary)
        kind = f"runtime stage, {a.binary}"
    workdir = Path(tempfile.mkdtemp(prefix="sm-container-test-"))
    ok = False
    try:
        t = time.monotonic()
        figures = image_checks.run_all(workdir)
        timings["image checks"] = time.monotonic() - t
        if not a.skip_compose:
            t = time.monotonic()
            compose.run_steps(workdir / "compose", a.podman_compose, s3, runbook.base_env())
            timings["compose"] = time.monotonic() - t
        ok = True
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"[container-test] FAILED; working directory kept: {workdir}", file=sys.stderr)
    print("[container-test] timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"[container-test] image {images.IMAGE} ({kind}): {figures['image_mb']} MB, "
          f"healthy {figures['seconds_to_healthy']} s after `podman run`")
    print(f"container-test: {image_checks.PASSED[0]} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except (image_checks.CheckFailed, RuntimeError) as e:
        sys.exit(f"[container-test] FAILED: {e}")
