SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	@# setuptools warns on every editable install that folders named like the packages take precedence: they are
	@# the packages themselves here.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[edge,services,client,dev,mujoco]'
	touch $@

.PHONY: setup
setup: $(STAMP) ## Create .venv with everything (edge, services, client, dev tools)

.PHONY: emulator
emulator: ## qemu-user (Debian) for the edge tests that emulate a CPU without VNNI; they skip without it
	@if command -v qemu-x86_64 >/dev/null; then echo "qemu-x86_64: $$(command -v qemu-x86_64)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null; }; \
	  echo "installed qemu-x86_64"; \
	else echo "qemu-x86_64 missing (needs root and apt-get to install): the emulated-CPU tests will skip" >&2; fi

# Debian's protoc and the protobuf-java of its release, Go with protoc-gen-go(-grpc) and the Go packages the
# generated code imports. No JDK: javac compiles the Java where one is installed.
CODEGEN_DEBS := protobuf-compiler libprotobuf-java golang-go protoc-gen-go protoc-gen-go-grpc golang-google-protobuf-dev \
	golang-google-grpc-dev

.PHONY: codegen-tools
codegen-tools: ## Debian's protoc, protobuf-java and Go for make codegen-check, which skips what is missing
	@if command -v protoc >/dev/null && command -v go >/dev/null && \
	  command -v protoc-gen-go >/dev/null && command -v protoc-gen-go-grpc >/dev/null && [ -f /usr/share/java/protobuf.jar ] && \
	  [ -d /usr/share/gocode/src/google.golang.org/grpc ]; then echo "codegen tools: $$(protoc --version), $$(go version)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CODEGEN_DEBS) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CODEGEN_DEBS) >/dev/null; }; \
	  echo "installed $(CODEGEN_DEBS)"; \
	else echo "protoc, protobuf-java or Go missing (needs root and apt-get to install $(CODEGEN_DEBS)): make codegen-check skips what needs them" >&2; fi

.PHONY: codegen-check
codegen-check: $(STAMP) codegen-tools ## Java, Go, C# and Objective-C generated from protos/ into a temp dir; Java and Go compiled
	$(BIN)/python scripts/codegen_check.py

.PHONY: generate
generate: $(STAMP) ## Regenerate the Python stubs from protos/
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/gen_protos.py

.PHONY: check-generated
check-generated: generate ## Fail if the committed stubs differ from the protos
	@if [ -n "$$(git status --porcelain --untracked-files=all -- 'plasma/*/v1/*')" ]; then \
	  echo "generated stubs are stale: run 'make generate' and commit" >&2; git status --porcelain --untracked-files=all -- 'plasma/*/v1/*' >&2; exit 1; fi

# `make lint` compares protos/ with this commit by buf breaking (FILE rules): the previous one, so CI refuses a
# newest commit that breaks the wire or generated code. BUF_AGAINST_REF=origin/main compares a branch with main.
BUF_AGAINST_REF ?= HEAD~1

.PHONY: lint
lint: $(STAMP) ## ruff, mypy, buf lint, and buf breaking against the previous commit
	$(BIN)/ruff check .
	$(BIN)/mypy plasma services edge_runtime bench scripts
	cd protos && ../$(BIN)/buf lint
	@if against=$$(git rev-parse -q --verify '$(BUF_AGAINST_REF)^{commit}'); then \
	  echo "buf breaking against $(BUF_AGAINST_REF) ($$against)"; \
	  $(BIN)/buf breaking protos --against "$$(git rev-parse --git-common-dir)#format=git,ref=$$against,subdir=protos"; \
	else echo "buf breaking: skipped, $(BUF_AGAINST_REF) is not in this clone (a shallow clone or a first commit)" >&2; fi

.PHONY: test
test: $(STAMP) ## All tests: unit, services on port 0, the four-service pipeline
	$(BIN)/python -m pytest

.PHONY: test-fast
test-fast: $(STAMP) ## Everything but the pipeline and container tests
	$(BIN)/python -m pytest -m "not pipeline and not e2e"

CERTS_DIR ?= var/certs

.PHONY: certs
certs: $(STAMP) ## A development CA and every service's and client's certificate in CERTS_DIR (var/certs); idempotent
	$(BIN)/python scripts/make_certs.py --out $(CERTS_DIR)

.PHONY: k8s-check
k8s-check: $(STAMP) ## Render the Helm chart deploy/k8s/plasma and validate every object against the Kubernetes schemas
	$(BIN)/python -m pytest tests/deploy -q -p no:cacheprovider

.PHONY: rust-client
rust-client: ## Build the Rust (tonic) client example: examples/rust-client/target/release/plasma-edge-client
	cd examples/rust-client && cargo build --release --locked

.PHONY: demo
demo: $(STAMP) ## Run the whole workflow on CartPole-v1 with the services as local processes
	$(BIN)/plasma demo

.PHONY: bench
bench: $(STAMP) ## Benchmarks (figures printed, nothing asserted; about an hour on 2 cores)
	$(BIN)/python -m bench.edge_latency
	$(BIN)/python -m bench.simulate_throughput
	$(BIN)/python -m bench.audit_detection
	$(BIN)/python -m bench.audit_training --seeds 0 1 2
	$(BIN)/python -m bench.sample_efficiency --seeds 0 1 2 --curves var/bench/curves
	$(BIN)/python -m bench.task_adapters

.PHONY: clean
clean: ## Remove the venv and local stores
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache

# Container images, the compose stack and the offline (no registry) build path.
include deploy/docker.mk
