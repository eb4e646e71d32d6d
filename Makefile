# Two commands on a fresh machine with only Python 3.11+ and make:
#   make demo   set up, then run the main job on the sample logs
#   make test   set up, then run the test suite
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

# No network at run time, no telemetry, no interpreter downloads.
export UV_PYTHON_DOWNLOADS := never
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: install demo test fuzz lint bench clean sample docs browser

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode is compiled once at install: PYTHONDONTWRITEBYTECODE (set on some machines) would
# otherwise make every process recompile its ~3,000 modules (half the CPU of a short run).
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	$(BIN)/python -m compileall -q dwatch detectors flows benchmarks
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m dwatch.demo

# The report tests open the HTML report in headless Chromium (Debian's package).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || (apt-get update && apt-get install -y chromium) || \
	  { echo "error: Chromium is needed by the browser tests and could not be installed; run as root: apt-get update && apt-get install -y chromium" >&2; exit 1; }

test: install browser
	$(BIN)/pytest -n 2 -q

# Property-based ingest tests with many random examples (make test runs a few, derandomized).
fuzz: install
	DWATCH_FUZZ_PROFILE=fuzz $(BIN)/pytest tests/robust/test_fuzz_ingest.py -q -p no:randomly

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

# The committed sample (sample_logs/README.md states this same command).
sample: install
	$(BIN)/dwatch generate sample_logs --events 5000 --seed 7 --format mixed --scale 0.002

docs: install
	$(BIN)/dwatch schema --markdown > docs/schema.md

clean:
	rm -rf $(VENV) $(TOOLS) data reports .prefect .pytest_cache
