# `make run`: install into .venv (first time), resolve the bundled models, start the service.
# `make test`: install with the test tools (and espeak-ng, chromium, qemu-user from Debian), lint, run the suite.
.PHONY: run test lint bench install install-dev lock FORCE

VENV := .venv
STAMP := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

LOCKS := requirements/runtime.lock requirements/dev.lock requirements/llama.lock requirements/smart-turn.lock
# Holds the MMSTREAM_LLAMA_CMAKE_ARGS of the last install, rewritten only when they change: new
# build flags make the install run again (and rebuild llama.cpp), as a new lock file does.
LLAMA_ARGS := $(VENV)/.llama-cmake-args

$(LLAMA_ARGS): FORCE
	@mkdir -p $(VENV)
	@printf '%s' "$$MMSTREAM_LLAMA_CMAKE_ARGS" | cmp -s - $@ || printf '%s' "$$MMSTREAM_LLAMA_CMAKE_ARGS" > $@

FORCE:

$(STAMP): pyproject.toml scripts/install.sh $(LOCKS) $(LLAMA_ARGS)
	scripts/install.sh
	touch $@

$(STAMP_DEV): pyproject.toml scripts/install.sh $(LOCKS) $(LLAMA_ARGS)
	scripts/install.sh --dev
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(STAMP_DEV)

run: $(STAMP)
	$(VENV)/bin/mmstream models
	$(VENV)/bin/mmstream up

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	scripts/test-tools.sh
	$(VENV)/bin/pytest

bench: $(STAMP_DEV)
	$(VENV)/bin/python -m bench.decoder

# Rewrite the hash-pinned lock files after a dependency changed in pyproject.toml.
lock: $(STAMP_DEV)
	scripts/lock.sh
