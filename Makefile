# Kubernetes Networking 101: build, test and run the course.
#
#   make book     build the static site into _build/html (warnings are errors)
#   make test     build the site, then run every test tier in one pytest run
#
# Other targets: serve, lab, outputs, bench, clean, distclean, help.
# Recipes call .venv/bin/... directly; nothing needs activating.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HTML   := _build/html

# Stored outputs, the book build and nbval all run kernels with the same settings.
export PYTHONHASHSEED := 0
unexport MPLBACKEND
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Stamps: the venv is (re)installed only when a requirements file changes.
VENV_STAMP := $(VENV)/.installed-book
TEST_STAMP := $(VENV)/.installed-test

.PHONY: help book test serve lab outputs bench assets setup clean distclean venv

help:
	@echo "make book       build the static site into $(HTML) (warnings are errors)"
	@echo "make test       make book, then unit + notebook (nbval) + site + kernel tests"
	@echo "make serve      serve $(HTML) on http://127.0.0.1:$(PORT)/ (PORT=... to change)"
	@echo "make lab        JupyterLab on notebooks/, bound to 127.0.0.1"
	@echo "make setup      create .venv with all requirements and fetch the site's assets"
	@echo "make outputs    re-execute every notebook in place and store its outputs"
	@echo "make bench      run the course's benchmarks (python -m labsupport.bench)"
	@echo "make clean      remove build output and caches (keeps .venv and _vendor)"
	@echo "make distclean  clean, and also remove the vendored assets in _vendor"

$(VENV_STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(TEST_STAMP): requirements-test.txt $(VENV_STAMP)
	$(PY) -m pip install --quiet -r requirements-test.txt
	@touch $@

venv: $(VENV_STAMP)

# Everything `make book` and `make test` need, without building (the devcontainer runs this).
setup: $(TEST_STAMP) assets

# Browser assets (RequireJS, widget manager, MathJax) from the npm registry into _vendor/.
assets: $(VENV_STAMP)
	@$(PY) scripts/fetch_assets.py

book: $(VENV_STAMP) assets
	@rm -rf $(HTML)  # no stale pages of renamed chapters; every build executes every lab anyway
	@cfg=""; if [ -f _vendor/cdn-config.yml ]; then cfg="--config _vendor/cdn-config.yml"; \
	  echo "!! building with CDN assets (see the message above)"; fi; \
	  $(VENV)/bin/jupyter-book build . --warningiserror --keep-going --builder html $$cfg
	@echo
	@echo "Built: $(abspath $(HTML))/index.html"

test: $(TEST_STAMP) book
	$(VENV)/bin/pytest tests notebooks --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/notebooks/sanitize.ini

serve:
	@test -f $(HTML)/index.html || { echo "No site in $(HTML): run 'make book' first." >&2; exit 1; }
	@echo "Serving $(HTML) on http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory $(HTML) $(PORT)

lab: $(VENV_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

outputs: $(VENV_STAMP)
	$(PY) scripts/store_outputs.py notebooks/*.ipynb

bench: $(TEST_STAMP)
	$(PY) -m labsupport.bench

clean:
	rm -rf _build .pytest_cache .hypothesis .ruff_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf _vendor
