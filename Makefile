# Everything a fresh machine needs, from the two commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
N ?= 3

.PHONY: install migrate demo run test test-fast bench chaos up down logs scale clean clean-data lock

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(INSTALLED)

migrate: install
	$(BIN)/python -m messaging migrate

demo: migrate
	$(BIN)/python -m messaging load-demo

# PostgreSQL and Redis where none answers (embedded, data in .devdata/), the migrations, the demo
# data, then API, two workers, beat, Flower and a local webhook receiver in the foreground (see
# Procfile); the URLs are printed once everything answers. Ctrl-C stops them all, also through a pipe.
run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m localrun || true

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not slow"

bench: install
	$(BIN)/python -m bench

# The full topology (standbys, Sentinels) under load and random faults; CHAOS_MINUTES (default 10).
chaos: install
	$(BIN)/python -m tests.faults.chaos

# What the image installs: every package pinned with its hashes, for Python 3.11 on any
# platform (markers kept). Rewritten whenever requirements.txt changes.
requirements.lock: requirements.txt | $(INSTALLED)
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make requirements.lock" --output-file $@ requirements.txt

lock: requirements.lock

up: requirements.lock
	$(COMPOSE) up -d --build

# Compose reads the whole file for every command, and three secrets have no default:
# stopping or reading logs starts nothing, so any value will do for those.
UNUSED_SECRETS = FLOWER_BASIC_AUTH="$${FLOWER_BASIC_AUTH:-unused}" REDIS_PASSWORD="$${REDIS_PASSWORD:-unused}" \
	API_TOKEN="$${API_TOKEN:-unused}"

down:
	$(UNUSED_SECRETS) $(COMPOSE) down

logs:
	$(UNUSED_SECRETS) $(COMPOSE) logs -f --tail=100

scale: requirements.lock
	$(COMPOSE) up -d --scale worker=$(N)

clean:
	rm -rf $(VENV) .pytest_cache

# The embedded servers' data (make run and make test start them when nothing answers).
clean-data:
	rm -rf .devdata
