# nsf-book: every target sets itself up on a fresh machine (Python 3.11, pip, npm, apt as root).
#   make book   build the book on the embedded default profile (CPU, no downloads)
#   make test   run the test suite (includes a ci-profile book build checked in headless Chromium)
#   make quick  the tests not marked slow (no book build, browser, torchrun or compiled paths)

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
MATHJAX  := .cache/mathjax-static/mathjax/tex-chtml.js
CHROMIUM := $(shell command -v chromium 2>/dev/null)

.PHONY: book test quick lint format benchmark clean

book: $(STAMP) $(MATHJAX)
	$(VENV)/bin/nsf book --profile default

test: $(STAMP) $(MATHJAX) chromium
	$(PY) -m pytest

quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmark: $(STAMP)
	$(PY) benchmarks/optimizer_step.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/spectral_batch.py

# torch and torchvision are pinned to the builds this project is tested with; pip takes them from
# local files where a machine has them, from PyPI elsewhere.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[book,data,dev]"
	touch $@

# MathJax 3 served with the book, so math renders offline (no CDN).
$(MATHJAX):
	mkdir -p .cache/npm .cache/mathjax-static
	npm install --silent --no-audit --no-fund --prefix .cache/npm mathjax@3
	rm -rf .cache/mathjax-static/mathjax
	cp -r .cache/npm/node_modules/mathjax/es5 .cache/mathjax-static/mathjax

# Debian's Chromium for the browser test of the rendered book (Playwright drives it).
chromium:
ifeq ($(CHROMIUM),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
endif

clean:
	rm -rf _build book/chapters book/_static/figures .cache/chapters
