# Two commands do everything on a fresh Debian machine (Python 3.11, root):
#   make book   -> environment, data, execute every notebook (quick), render the HTML book
#   make test   -> environment, data, the whole test suite
# Variables: PROFILE=quick|full (book), VENV=.venv, PYTHON=python3, PYTEST_ARGS=...
VENV ?= .venv
PYTHON ?= python3
PROFILE ?= quick
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tasknb-setup

.PHONY: book test setup notebooks html pair clean bench

book: setup notebooks html
	@echo
	@echo "Book built from the $(PROFILE) run: open $(CURDIR)/_build/html/index.html"
	@echo "(or serve it: $(PY) -m http.server -d _build/html 8000, then http://127.0.0.1:8000)"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP)
	bash book/fetch_widget_js.sh

$(STAMP): pyproject.toml
	bash .ci/setup_system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

notebooks:
	$(PY) -m tasknb.runner --profile $(PROFILE) --out _build/executed

html:
	$(PY) -m tasknb.book --executed _build/executed --html _build/html

# regenerate the output-less .ipynb pair of every text notebook
pair:
	$(VENV)/bin/jupytext --sync notebooks/part_*/*.md

bench: setup
	$(PY) benchmarks/bench_batched_training.py
	$(PY) benchmarks/bench_replica_slice.py
	$(PY) benchmarks/bench_bhattacharyya.py
	$(PY) benchmarks/bench_seed_batching.py

clean:
	rm -rf _build
