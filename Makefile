# alumon: the two commands in README.md are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := mosquitto mosquitto-clients influxdb influxdb-client victoria-metrics mbpoll socat openssl systemd
SCENARIO ?= energy-drift
DURATION ?= 150
PYTEST_ARGS ?=

.PHONY: setup system-deps venv demo test faults lint lock clean

setup: system-deps venv

# Debian packages: the real broker, database and Modbus/serial tools the demo and the tests run against.
system-deps:
	@missing=""; for b in mosquitto mosquitto_sub influxd influx victoria-metrics mbpoll socat openssl systemd-analyze; do \
	  command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(BIN)/python:
	$(shell command -v $(PYTHON) || echo python3) -m venv $(VENV)

# Locked Python dependencies, then alumon itself (editable, no further resolution).
venv: $(BIN)/python
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .

demo: setup
	$(BIN)/alumon demo --site examples/guangxi-demo/site.yaml --scenario $(SCENARIO) --duration $(DURATION) \
	  --summary run/demo-summary.json

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault-injection suite alone, printing one JSON line per scenario (LONG=1: 60 s outages instead of 10 s).
faults: setup
	$(BIN)/python -m pytest tests/faults -s $(if $(LONG),--long)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy alumon edge ingest analytics tests bench

lock: venv
	$(BIN)/python -m pip freeze --exclude-editable | sed '1i # Exact versions installed by `make setup` (pip install -r requirements.lock). Regenerate with `make lock`.' > requirements.lock

clean:
	rm -rf run .pytest_cache .mypy_cache .ruff_cache
