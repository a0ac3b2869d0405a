# The two commands of the README:
#   make run    install and run the gateway on the embedded default config
#   make test   install everything the tests need and run them all
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install system-deps run test lint typecheck unit check-coverage bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Always reinstall the package itself: twistd finds the plugin in the
# installed copy, and a stale copy would run old code.
install: $(PY)
	$(PIP) install --quiet '.[test]'

system-deps:
	bash .ci/system-deps

run: install
	mkdir -p var
	$(VENV)/bin/twistd -n --pidfile= alertgateway --config etc/alertgateway.yaml

lint: install
	$(VENV)/bin/ruff check alertgateway twisted tests bench
	$(VENV)/bin/ruff format --check alertgateway twisted tests bench
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m twisted.trial tests.unit

test: system-deps install lint typecheck
	rm -f .coverage .coverage.*
	$(VENV)/bin/coverage run -m twisted.trial --temp-directory=.trial_temp tests
	$(VENV)/bin/coverage combine --quiet
	$(VENV)/bin/coverage report

# The reproducible benchmark (bench/README.md); installs wrk when root and
# missing.  make bench ARGS=--quick for a one-minute smoke run.
bench: install
	bash bench/run $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .trial_temp .coverage .coverage.* var
