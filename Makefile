# cotrain: `make help` lists the targets. Everything installs into .venv/ at the repo root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup demo trainer-demo test test-fast lint services clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install cotrain with its test tools

$(STAMP): pyproject.toml requirements/torch.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: a bare "torch" would pull a multi-GB CUDA build.
	$(PY) -m pip install -q -r requirements/torch.txt
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: setup ## set up and run the main job: the whole loop (cases, batch, training, evaluation, release) on SQLite, then serve
	$(PY) manage.py demo

trainer-demo: setup ## tiny LFA fine-tune on CPU: train, compare with the base, export, generate
	$(PY) -m trainer init --preset yuan2_tiny --seed 0 --out runs/demo/base
	$(PY) -m trainer train --config trainer/configs/tiny_cpu.yaml --output-dir runs/demo
	$(PY) -m trainer eval --base runs/demo/base --model runs/demo/export/merged \
		--data trainer/assets/demo --split eval --out runs/demo/compare --max-new-tokens 24
	$(PY) -m trainer generate --model runs/demo/export/merged --max-new-tokens 24 \
		--prompt "计算：9 × 6 = ?" --prompt "Translate to English: 模型发布了。"

test: setup services ## set up and run the checks (ruff, mypy) and the whole test suite (PostgreSQL, Redis, headless Chromium)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	./scripts/browser.sh
	$(PY) -m pytest -q

test-fast: setup ## the tests not marked slow
	$(PY) -m pytest -q -m "not slow"

lint: setup ## ruff, and mypy over trainer/ and worker/ (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

services: ## start local PostgreSQL and Redis if they are down
	./scripts/services.sh

clean: ## remove run outputs (keeps .venv)
	rm -rf runs var .pytest_cache
