# Everything a fresh machine needs, from the two commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
N ?= 3

.PHONY: install migrate demo run test test-fast bench up down logs scale clean

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(INSTALLED)

migrate: install
	$(BIN)/python -m messaging migrate

demo: migrate
	$(BIN)/python -m messaging load-demo

# API, worker, beat, Flower and a local webhook receiver in the foreground; Ctrl-C stops them all.
run: demo
	@echo "API        http://127.0.0.1:8080  (try: curl -X POST http://127.0.0.1:8080/messaging/start)"
	@echo "Swagger UI http://127.0.0.1:8080/docs"
	@echo "Flower     http://127.0.0.1:5555"
	@echo "Receiver   http://127.0.0.1:9000  (the webhook; it logs every delivery)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile 2>&1 || true

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not slow"

bench: install
	$(BIN)/python -m bench

up:
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=100

scale:
	$(COMPOSE) up -d --scale worker=$(N)

clean:
	rm -rf $(VENV) .pytest_cache
