# The two commands a fresh machine needs: `make demo` and `make test` (README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: test demo install system-deps bench clean lint alerts generated

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,demo]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Prometheus/promtool/Alertmanager come from Debian packages; PostgreSQL is the machine's own server.
system-deps:
	@bash .ci/system-deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m monitor.devkit.demo $(if $(KEEP),--keep) $(DEMO_ARGS)

# The generated files, committed (tests check they are up to date): the Prometheus rules rendered from their
# source (alerts/src/) with the default options, the same rules as the monitoring overlay's PrometheusRule, and
# the Grafana dashboard as the overlay's ConfigMap. For an installation:
#   python3 alerts/render.py --selector 'job="ns/nlpmon"' --runbook-url URL [--format prometheusrule] -o FILE
generated:
	$(PYTHON) alerts/render.py
	$(PYTHON) alerts/render.py --format prometheusrule
	$(PYTHON) grafana/configmap.py

alerts: generated

bench: $(STAMP)
	$(PY) bench/detectors.py
	$(PY) bench/pipeline.py
	$(PY) bench/reeval.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-out
