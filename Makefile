# FairDerm: two commands on a fresh machine with Python 3.11.
#   make demo   install, then run the main job chain on the embedded default and serve the site
#   make test   install, then lint and run the test suite
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fairderm-installed
# Test processes (pytest-xdist); 0 runs the suite in this process, as plain `pytest` does.
TEST_WORKERS ?= 2

.PHONY: install demo test lint format serve worker clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "FairDerm needs Python 3.11 ($(PYTHON) not found; set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "FairDerm needs Python 3.11; $(PYTHON) is $$($(PYTHON) --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the pinned requirements change (fast when already installed).
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip check
	@touch $(STAMP)

install: $(STAMP)

demo: install
	DEBUG=1 $(PY) manage.py demo $(DEMO_ARGS)

test: install lint
	$(PY) -m pytest -n $(TEST_WORKERS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

serve: install
	DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

worker: install
	DEBUG=1 $(VENV)/bin/celery -A worker worker -Q gpu,cpu --concurrency 1 --loglevel INFO

clean:
	rm -rf var/test .pytest_cache .ruff_cache
