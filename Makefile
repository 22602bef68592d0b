# Every target sets up .venv by itself (idempotently) before it runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench fmt clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,bench]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/ottla serve $(ARGS)

# KafkaJS for tests/integration/test_client_kafkajs.py, from its package-lock.json.
# Without npm the step says so and the KafkaJS tests fail with the same advice.
KAFKAJS := tests/integration/kafkajs
KAFKAJS_STAMP := $(KAFKAJS)/node_modules/.installed

$(KAFKAJS_STAMP): $(KAFKAJS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(KAFKAJS) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the KafkaJS tests will fail (apt-get install nodejs npm)"; \
	fi

test: $(STAMP) $(KAFKAJS_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Dockerfile + compose.yaml for real with podman (root, Debian): sets the machine up,
# builds the image offline, runs three nodes, kills and restarts one. See
# tests/containers/run.sh. Fails (never skips) where podman cannot run.
.PHONY: container-test
container-test: $(STAMP)
	bash tests/containers/run.sh
