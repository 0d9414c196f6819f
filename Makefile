# Two entry points for a newcomer (see README):  make dashboard  and  make test
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data lives beside the checkout; the dashboard's demo workspace and the tests read it from there.
HSAE_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export HSAE_DATA_DIR
PORT ?= 8501

.PHONY: install browser dashboard lint test bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the end-to-end browser test (Playwright never downloads a browser here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the browser test will be skipped"

# The demo workspace is built here, in the terminal, before the server starts (a no-op once built). Without
# demo data `hsae demo` says what to download (status 2) and the dashboard still opens. hsae_core.warm_start is
# `streamlit run app.py` that imports the first page's modules once the server answers, and torch once that page
# has run, so that neither the first page nor the first Search waits for them.
dashboard: install
	@$(PY) -m hsae_core.cli demo; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 2 ] || exit $$status
	$(PY) -m hsae_core.warm_start --server.headless true --server.address 127.0.0.1 --server.port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install browser lint
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .hsae .pytest_cache
