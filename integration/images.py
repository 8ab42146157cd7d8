"""The images of the container test, all made on this machine (no registry is needed).

- The Debian base: `debootstrap --variant=minbase bookworm` imported into podman; it stands in
  for `debian:bookworm-slim` (the base stage).
- The Rust builder: that base with gcc and this machine's own toolchain (`rustc --print
  sysroot`), standing in for `rust:1.95-slim-bookworm` (the builder stage; full builds only).
- The S3 server: moto from PyPI on that base, standing in for MinIO in the compose test.
- Ours: the repository's Dockerfile built with podman, its base images given as build
  arguments: by default its `runtime` stage around the binary the host built (`prebuilt`),
  or the whole file with its builder stage (`full`), as `docker build .` does.

Each local image is tagged with a content stamp: a hash of everything it is made from (the
suite and mirror, the recipe's text, `rustc -vV`, moto's version). An image whose tag exists
is not made again, so only the first run on a machine pays for them. The Rust builder is made
only for a full build.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "container"
REPO = HERE.parent
SUITE = "bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
MOTO_VERSION = "5.2.5"
REPO_NAME = "localhost/state-manager-test"
# The image the shipped docker-compose.yml names.
IMAGE = "localhost/state-manager:local"


def log(msg):
    print(f"[container-test] {msg}", flush=True)


def run(*cmd, check=True, capture=False, **kw):
    """Run a command; with `capture`, return its stdout (stripped)."""
    if capture:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
    out = subprocess.run(cmd, check=False, text=True, **kw)
    if check and out.returncode != 0:
        detail = f"\n{out.stdout}\n{out.stderr}" if capture else ""
        raise RuntimeError(f"`{' '.join(map(str, cmd))}` exited {out.returncode}{detail}")
    return out.stdout.strip() if capture else out.returncode


def podman(*args, **kw):
    return run("podman", *args, **kw)


def exists(image):
    return podman("image", "exists", image, check=False) == 0


def stamp(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def debian_base():
    """The minbase Debian image (debian:bookworm-slim's stand-in)."""
    image = f"{REPO_NAME}/debian:{SUITE}-{stamp(SUITE, MIRROR, 'minbase', 'v1')}"
    if exists(image):
        return image
    log(f"making {image} with debootstrap (once per machine)")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sm-debootstrap-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        run("debootstrap", "--variant=minbase", SUITE, str(root), MIRROR,
            stdout=subprocess.DEVNULL)
        # debootstrap leaves its package lists and cache behind; a slim base has neither.
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / d).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "--change", "CMD [\"bash\"]", "-", image,
            stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap tree failed")
    log(f"made {image} in {time.monotonic() - start:.0f} s")
    return image


def build(image, containerfile, context, args=(), volumes=(), target=None):
    cmd = ["podman", "build", "--network", "host", "--format", "docker", "-f", str(containerfile),
           "-t", image]
    if target:
        cmd += ["--target", target]
    for a in args:
        cmd += ["--build-arg", a]
    for v in volumes:
        cmd += ["-v", v]
    run(*cmd, str(context))


def sysroot():
    return Path(run("rustc", "--print", "sysroot", capture=True))


def cargo_home():
    return Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))


def builder(base):
    """The Rust build image (rust:1.95-slim-bookworm's stand-in) with this machine's toolchain."""
    recipe = RECIPES / "builder.Containerfile"
    version = run("rustc", "-vV", capture=True)
    image = f"{REPO_NAME}/rust:{stamp(base, version, str(cargo_home()), recipe.read_text())}"
    if exists(image):
        return image
    log(f"making {image} from this machine's toolchain (once per machine)")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sm-builder-") as ctx:
        build(image, recipe, ctx, args=[f"BASE={base}", f"CARGO_HOME={cargo_home()}"],
              volumes=[f"{sysroot()}:/mnt/rust:ro"])
    log(f"made {image} in {time.monotonic() - start:.0f} s")
    return image


def moto(base):
    """The S3 server image of the compose test (MinIO's stand-in)."""
    recipe = RECIPES / "moto.Containerfile"
    image = f"{REPO_NAME}/moto:{stamp(base, MOTO_VERSION, recipe.read_text(), harness.SERIALIZED_MAIN)}"
    if exists(image):
        return image
    log(f"making {image} (once per machine)")
    args, volumes = [f"BASE={base}", f"MOTO_VERSION={MOTO_VERSION}"], []
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if ca.is_file():
        args.append("PIP_CERT=/run/host-ca.crt")
        volumes.append(f"{ca.resolve()}:/run/host-ca.crt:ro")
    with tempfile.TemporaryDirectory(prefix="sm-moto-") as ctx:
        (Path(ctx) / "serialized.py").write_text(harness.SERIALIZED_MAIN)
        build(image, recipe, ctx, args=args, volumes=volumes)
    return image


def _replace(before, note):
    """Remove the image IMAGE named before a build, now untagged (one per run would pile up)."""
    after = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, capture=True)
    if before and before != after:
        podman("rmi", before, check=False, capture=True)
    log(note)


def _tagged():
    return podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False, capture=True)


def prebuilt(base, binary):
    """Build the Dockerfile's `runtime` stage as IMAGE around `binary`, a state-manager the host
    already built: no toolchain and no compilation in the image build, only the runtime stage's
    layers on the Debian base. The context is a directory holding the binary alone."""
    binary = Path(binary).resolve()
    if not binary.is_file():
        raise RuntimeError(f"no binary at {binary}: build it first (`cargo build --locked`, "
                           "or `make test`, whose cargo tests build it)")
    log(f"building {IMAGE} (Dockerfile target runtime) around {binary}")
    start = time.monotonic()
    before = _tagged()
    with tempfile.TemporaryDirectory(prefix="sm-runtime-", dir=binary.parent) as ctx:
        try:
            os.link(binary, Path(ctx) / "state-manager")
        except OSError:
            shutil.copy2(binary, Path(ctx) / "state-manager")
        build(IMAGE, REPO / "Dockerfile", ctx, target="runtime",
              args=[f"RUNTIME_IMAGE={base}", "PREBUILT=state-manager"])
    seconds = time.monotonic() - start
    _replace(before, f"built {IMAGE} in {seconds:.0f} s")
    return seconds


def full(base, rust, profile):
    """Build the whole Dockerfile as IMAGE, as `docker build .` does: the builder stage compiles
    the binary in `profile`. The host's cargo registry and target directory are mounted into the
    build, so it reuses what the host compiled with the same features (the same toolchain at the
    same CARGO_HOME gives the same fingerprints)."""
    log(f"building {IMAGE} (the whole Dockerfile, cargo profile {profile})")
    start = time.monotonic()
    target = REPO / "target"
    target.mkdir(exist_ok=True)
    registry = cargo_home() / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    before = _tagged()
    build(IMAGE, REPO / "Dockerfile", REPO,
          args=[f"BUILD_IMAGE={rust}", f"RUNTIME_IMAGE={base}", f"CARGO_PROFILE={profile}"],
          volumes=[f"{target}:/src/target", f"{registry}:{registry}"])
    seconds = time.monotonic() - start
    # The builder stage's image is left untagged by every build; it carries the builder's label.
    podman("image", "prune", "-f", "--filter", "label=io.state-manager.test=builder",
           capture=True)
    _replace(before, f"built {IMAGE} in {seconds:.0f} s")
    return seconds


def require():
    missing = [t for t in ("podman", "debootstrap", "curl", "jq") if not shutil.which(t)]
    if missing:
        sys.exit(f"the container test needs {missing} on PATH (.ci/run installs them: "
                 "apt-get install podman runc debootstrap curl jq)")
