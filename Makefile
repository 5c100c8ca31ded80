# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Users with GPUs override this (e.g. `make demo TORCH_SPEC=torch`) to keep a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint format sample-report browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Debian's Chromium and its driver, for the HTML report's browser test; skipped where apt is absent.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "greenprof: could not install chromium; the browser test will be skipped"; \
	else echo "greenprof: chromium not installed and apt-get unavailable; the browser test will be skipped"; fi

demo: $(VENV)/.installed
	$(PY) -m greenprof run --out reports/demo examples/train_mlp.py --epochs 2
	@echo "Report: reports/demo/report.html"

test: $(VENV)/.installed browser
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check greenprof tests benchmarks examples
	$(VENV)/bin/ruff format --check greenprof tests benchmarks examples
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format greenprof tests benchmarks examples
	$(VENV)/bin/ruff check --fix greenprof tests benchmarks examples

# Regenerates the sample report kept in reports/sample/ for visitors.
sample-report: $(VENV)/.installed
	rm -rf reports/sample
	$(PY) -m greenprof run --out reports/sample examples/train_mlp.py --epochs 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
