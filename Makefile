# One entry point for developers and CI.  Every target creates (once) and then
# reuses the virtual environment in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/python -m pytest
# Reinstall (and recompile the Cython kernels) when packaging or a kernel changes.
STAMP := $(VENV)/.installed
KERNELS := $(shell find gateway -name '*.pyx' 2>/dev/null)

.PHONY: help venv test test-protocol test-firmware test-gateway test-hil demo bench clean

help:
	@echo "make demo            gateway + simulated nodes + broker, on embedded defaults"
	@echo "make test            every test suite (protocol, firmware, gateway, HIL)"
	@echo "make test-protocol   wire protocol: codec, vectors (CPython and MicroPython)"
	@echo "make test-firmware   node firmware, inside the MicroPython unix port"
	@echo "make test-gateway    gateway service, kernels, MQTT routes"
	@echo "make test-hil        hardware-in-the-loop: simulated nodes end to end"
	@echo "make bench [QUICK=1] benchmarks (results in bench/results/)"

venv: $(STAMP)

# pysparkplug is the Sparkplug tests' independent decoder.  It pins
# paho-mqtt<2 for a client we never use, which conflicts with the test
# harness' paho-mqtt 2, so it cannot sit in the `test` extra and installs
# without its dependencies: its decoder needs only protobuf (a dependency).
$(STAMP): pyproject.toml setup.py $(KERNELS)
	bash .ci/bootstrap.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=69" wheel "Cython>=3.0"
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test,demo]"
	$(BIN)/python -m pip install -q --no-deps "pysparkplug>=0.6.1"
	touch $(STAMP)

# A suite whose part does not exist yet says so and succeeds; it never
# pretends to have tested anything.
SUITES := protocol/tests firmware/tests gateway/tests tools/tests hil_tests
run_suite = if ls $(1)/test_*.py >/dev/null 2>&1; then $(PYTEST) $(1) $(PYTEST_ARGS); \
	else echo "$(1): no tests yet (that part is not built yet)"; fi

test: $(STAMP)
	$(PYTEST) $(foreach s,$(SUITES),$(if $(wildcard $(s)/test_*.py),$(s),)) $(PYTEST_ARGS)

test-protocol: $(STAMP)
	@$(call run_suite,protocol/tests)

test-firmware: $(STAMP)
	@$(call run_suite,firmware/tests)

test-gateway: $(STAMP)
	@$(call run_suite,gateway/tests)

test-hil: $(STAMP)
	@$(call run_suite,hil_tests)

demo: $(STAMP)
	@if $(BIN)/smemet demo --help >/dev/null 2>&1; then $(BIN)/smemet demo $(DEMO_ARGS); \
	else echo "the demo is not built yet: see README.md"; fi

bench: $(STAMP)
	@if [ -f bench/run.py ]; then $(BIN)/python bench/run.py $(if $(QUICK),--quick,); \
	else echo "benchmarks are not built yet"; fi

clean:
	rm -rf build dist *.egg-info bench/results
	find . -name '__pycache__' -prune -exec rm -rf {} +
	find gateway -name '*.c' -delete -o -name '*.so' -delete
