# The one test command (README quick start and .ci/run both call `make test`).
#
# Tests need the moto S3 server from PyPI; it is installed into .venv on first use.

VENV ?= .venv
MOTO := $(abspath $(VENV))/bin/moto_server
MOTO_VERSION ?= 5.2.5

.PHONY: test lint deps bench

test: deps
	MOTO_SERVER=$(MOTO) cargo test --workspace --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

deps: $(MOTO)

$(MOTO):
	@python3 -m venv $(VENV) || { echo "python3 -m venv failed: on Debian, apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
