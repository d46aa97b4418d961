# The two commands of the README: `make book` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick

.PHONY: book test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[book,test]'
	touch $@

book: $(VENV)/.installed
	$(PY) tools/build_book.py --profile $(PROFILE)

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf _build book/generated .nc1cache
