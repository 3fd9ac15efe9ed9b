# swarmcast: the README's two commands are `make demo` and `make test`.
# Each installs what is missing first: Debian packages (as root), a .venv with the package in
# editable mode, and web/node_modules once web/ has a package.json.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Unit tests of the modules swarmcast.accel compiles, run again on their pure-Python source.
PURE_TESTS := tests/test_scheduler.py tests/test_scheduler_index.py \
	tests/test_scheduler_properties.py tests/test_bandwidth.py tests/test_upload.py \
	tests/test_sim_engine.py tests/test_sim_network.py tests/test_sim.py tests/test_accel.py
# Debian packages the demo and the tests use: browser tests, Redis scale-out, TURN, netns.
APT_PACKAGES := chromium redis-server coturn iproute2
# Binaries that tell whether each package above is present.
APT_PROBES   := /usr/bin/chromium /usr/bin/redis-server /usr/bin/turnserver /usr/sbin/ip

.PHONY: demo test test-py test-js lint deps system-deps python-deps accel web-deps clean help

help:
	@echo "make demo   install what is missing, then run the local demo"
	@echo "make test   install what is missing, then run every test"
	@echo "make lint   ruff over the Python code"
	@echo "make accel  compile the simulator's hot modules (part of deps; SWARMCAST_ACCEL=0 skips them)"

demo: deps
	$(VENV)/bin/swarmcast demo

test: deps
	@$(MAKE) --no-print-directory test-py test-js

# Python tests run inside a private network namespace (tests/netns-run) so WebRTC traffic has
# real, non-loopback addresses that never leave this machine.
# With a compiled build (make accel) the suite runs the compiled modules; their unit tests run
# once more on the pure-Python source, which is what an install without a compiler gets.
test-py:
	tests/netns-run $(VENV)/bin/pytest $(PYTEST_ARGS)
	SWARMCAST_ACCEL=0 $(VENV)/bin/pytest -q -m "not netns and not browser" $(PURE_TESTS)

test-js:
	@if [ -f web/package.json ]; then cd web && npm test; else echo "web/: no package.json yet, no JS tests"; fi

lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

deps: system-deps python-deps accel web-deps

system-deps:
	@missing=""; \
	for probe in $(APT_PROBES); do [ -x "$$probe" ] || missing="$$missing $$probe"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
		echo "missing:$$missing"; \
		echo "install them with: sudo apt-get install $(APT_PACKAGES)"; \
		echo "(tests that need them will be skipped)"; \
	fi

python-deps: $(VENV)/.installed

# The simulator's scheduler and engine compiled with mypyc (~2x faster; see swarmcast/accel.py).
# Rebuilt when a compiled source changed; a failed build warns and leaves pure Python.
accel: python-deps
	@$(PY) -m swarmcast.accel_build --optional

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "swarmcast needs Python >= 3.11 (found $$($(PYTHON) --version)); set PYTHON=..."; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# npm packages for web/, then the browser bundles (web/dist) that the player pages serve.
web-deps:
	@if [ -f web/package.json ]; then \
		if [ ! -d web/node_modules ] || [ web/package.json -nt web/node_modules ]; then \
			(cd web && (npm ci --no-audit --no-fund || npm install --no-audit --no-fund) && touch node_modules); \
		fi; \
		if [ ! -f web/dist/swarmcast.js ] || [ -n "$$(find web/src web/scripts -newer web/dist/swarmcast.js -type f | head -1)" ]; then \
			(cd web && npm run --silent build); \
		fi; \
	fi

clean:
	rm -rf $(VENV) web/node_modules web/dist .pytest_cache .ruff_cache .hypothesis media \
		swarmcast/_accel
