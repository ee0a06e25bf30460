# connect-chat-relay: every command a reviewer runs. Only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv lint typecheck unit test demo chaos bench package render policies deploy destroy openapi clean

help:
	@echo "make demo     run the relay end to end on emulated AWS (no account needed)"
	@echo "make test     lint, type check and every test"
	@echo "make chaos    durable delivery under injected faults: ends with chaos: ... lost=0"
	@echo "make bench    throughput, latency, cold start and memory figures against baselines"
	@echo "make package  chalice package into build/package"
	@echo "make render   render .chalice/config.json, the policies and the destinations files from stages/*.json"
	@echo "make deploy STAGE=dev   infrastructure stack, chalice deploy, what Chalice cannot set, then the monitoring stack"
	@echo "make destroy STAGE=dev  the monitoring stack, chalice delete and the infrastructure stack (archive bucket kept)"
	@echo "make openapi  write chalicelib/schemas/ and chalicelib/openapi.json from scripts/openapi.py"
	@echo "make lint | typecheck | unit   the parts of make test, one at a time"
	@echo "make venv     set up .venv (every target does it first)    make clean   remove .venv and everything built"

# chalice 1.34 requires pip<26.3: a newer pip would be downgraded again, with a resolver error on the way.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip<26.3'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint infra/*.yaml

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python -m scripts.demo

chaos: $(STAMP)
	$(BIN)/python -m scripts.chaos

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.storage
	$(BIN)/python -m bench.reconciliation
	$(BIN)/python -m bench.wake

# Chalice packages chalicelib as it finds it: bytecode the tests wrote (for this Python, not Lambda's) stays out.
NO_BYTECODE := find chalicelib -name __pycache__ -type d -prune -exec rm -rf {} +

package: $(STAMP)
	rm -rf build/package
	$(NO_BYTECODE)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $${STAGE:-dev} \
		--merge-template infra/on-failure.json build/package
	$(BIN)/python -m scripts.lambda_runtime build/package/sam.json
	$(BIN)/cfn-lint build/package/sam.json
	@echo "CloudFormation template and deployment.zip written to build/package"

render: $(STAMP)
	$(BIN)/python -m scripts.render

policies: render

openapi: $(STAMP)
	$(BIN)/python -m scripts.openapi

# make deploy STAGE=dev: scripts/deploy.py (infrastructure stack, chalice deploy, what Chalice cannot set).
deploy: $(STAMP)
	$(if $(STAGE),,$(error make deploy needs STAGE=<stage>, one of stages/*.json))
	$(NO_BYTECODE)
	$(BIN)/python -m scripts.deploy deploy --stage $(STAGE)

# make destroy STAGE=dev [KEEP_ARCHIVE=false]: chalice delete and the stack; the archive bucket is kept unless told.
destroy: $(STAMP)
	$(if $(STAGE),,$(error make destroy needs STAGE=<stage>, one of stages/*.json))
	$(BIN)/python -m scripts.deploy destroy --stage $(STAGE) $(if $(filter false,$(KEEP_ARCHIVE)),--delete-archive)

clean:
	rm -rf $(VENV) build .relay-demo .chaos .bench .mypy_cache .ruff_cache .pytest_cache .hypothesis
