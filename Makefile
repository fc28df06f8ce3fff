# minisd: two commands on a fresh machine with Python 3.11+
#   make demo   the main job: create .venv if missing, train all three stages for the profile,
#               sample and evaluate (outputs/: checkpoint, samples.png, denoising.gif, report.json, sweep.png)
#   make test   create .venv if missing, install minisd with [dev,course], check export drift,
#               run the unit tests and every notebook (quick profile, offline)
#   make lab    the same set-up, then JupyterLab on chapters/
#   make bench  the scenes benchmark of chapter 10b on BENCH (default `real`: real renders, the ceiling row;
#               or a pipeline folder, e.g. `make bench BENCH=outputs/checkpoint`); prints the scores and a
#               leaderboard row, writes outputs/bench.json; BENCH_ARGS="--leaderboard benchmarks/scenes_leaderboard.md"
#               appends the row to the leaderboard
#   make site   the course as a static website in _build/site/html/ (Sphinx + MyST-NB, from the committed
#               outputs, no re-run; works offline): open its index.html, or serve it with
#               .venv/bin/python -m http.server -d _build/site/html
#   make labs   the instructor kit in labs/: solutions/ (answers marked ### BEGIN/END SOLUTION, hidden tests),
#               student/ (stubs, public self-checks, no hidden tests); grade a student's notebook with
#               .venv/bin/python tests/labs.py grade labs/student/05_diffusion.ipynb
#   make curves the reference curves of the main job (cpu profile; stage losses, adherence every 100 UNet steps) in assets/
# and, for maintainers:
#   make export write minisd/ from the notebooks (nbdev), after editing an exported cell
#   make lint   ruff on the package and the tests

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-minisd
# Tests and notebooks never reach the network and run at the quick profile's size; passive OpenMP
# threads keep PyTorch from collapsing when a shared machine has more jobs than cores.
TEST_ENV := MINISD_PROFILE=quick HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE

.PHONY: setup demo test lab export lint bench site labs curves

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "minisd needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,course]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m minisd demo

BENCH      ?= real
BENCH_ARGS ?=

bench: $(STAMP)
	$(PY) -m minisd bench $(BENCH) --out outputs/bench.json $(BENCH_ARGS)

curves: $(STAMP)
	$(PY) benchmarks/reference_curves.py --profile cpu $(CURVES_ARGS)

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest

# Extra JupyterLab options, e.g. `make lab LAB_ARGS="--no-browser --port 8890"`; root (a container) needs --allow-root.
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_ARG) $(LAB_ARGS) chapters/

export: $(STAMP)
	$(VENV)/bin/nbdev-export

lint: $(STAMP)
	$(VENV)/bin/ruff check minisd tests

# The website: docs/ holds its Sphinx configuration and front page. The notebooks and assets/ are copied
# next to the front page, so that `../assets/...` links resolve as in JupyterLab; their times are kept,
# so that the parsed pages cached in $(SITE_WORK) spare a rebuild most of its work. Nothing is executed.
# (MyST-NB writes the notebooks' images next to the site, in $(SITE)/../jupyter_execute.)
SITE_WORK  ?= _build/site
SITE       ?= $(SITE_WORK)/html
SITE_STAMP := $(VENV)/.installed-minisd-site

$(SITE_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,course,site]"
	touch $(SITE_STAMP)

site: $(SITE_STAMP)
	rm -rf $(SITE) $(SITE_WORK)/src && mkdir -p $(SITE_WORK)/src
	cp -Rp docs/index.md chapters assets $(SITE_WORK)/src/
	$(VENV)/bin/sphinx-build -q -b html -c docs -d $(SITE_WORK)/doctrees $(SITE_WORK)/src $(SITE)
	@echo "site: $(SITE)/index.html"

LABS ?= labs

labs: $(STAMP)
	$(PY) tests/labs.py build --out $(LABS)
