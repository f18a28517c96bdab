# The course's set-up and jobs. `make demo` and `make test` each set everything up on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NBVAL  := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup demo test unit unit-fast notebooks execute lab benchmarks browser-test clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

## demo: the learned VLA (pi0_base) puts the named cube in the bin from language (headless); outputs/so100_demo.mp4
demo: $(STAMP)
	$(VENV)/bin/vla-course demo --out outputs/so100_demo.mp4

## test: unit tests and the package's doctests, then every notebook re-executed and checked by nbval
test: $(STAMP)
	$(PY) -m pytest -q --doctest-modules vla_course tests notebooks $(NBVAL)

unit: $(STAMP)
	$(PY) -m pytest -q --doctest-modules vla_course tests

## unit-fast: the unit tests without the ones marked slow
unit-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

notebooks: $(STAMP)
	$(PY) -m pytest -q notebooks $(NBVAL)

## execute: re-run every notebook in place (fresh kernel, tidy outputs), as they are committed
execute: $(STAMP)
	$(PY) scripts/run_notebook.py notebooks/*.ipynb

## lab: JupyterLab on the notebooks
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

## browser-test: each notebook with a widget run in JupyterLab in headless Chromium, every control moved (screenshots: outputs/browser/)
browser-test: $(STAMP)
	chromium=$$(bash scripts/install_chromium.sh) && $(PY) scripts/browser_test.py --chromium "$$chromium" $(BROWSER_TEST_ARGS)

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs
