# usecase-zoo — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DVC_NO_ANALYTICS ?= 1
export PYTHONHASHSEED ?= 0
# RESUME=1 continues an interrupted `full` training from its last epoch's checkpoint
# (runs/<usecase>/<name>/last.ckpt.safetensors), e.g. `make full-mt RESUME=1`.
TRAIN_FLAGS := $(if $(RESUME),--resume)

.PHONY: help system install data repro full full-mt full-speech speech-full-lang test lint format bench lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

system:  ## Debian packages: Tesseract OCR + French, certificate fonts, iso-codes (apt-get, once)
	bash tools/system-deps.sh

install: system $(STAMP)  ## create .venv and install the pinned stack (idempotent)

data: install  ## fetch source archives (offline mirror or URL) and build data/raw deterministically
	$(BIN)/zoo fetch
	$(BIN)/dvc commit -q -f data.dvc

repro: data  ## install, get the data, run the default pipeline (`dvc repro`)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

full: data  ## the zoo's best crop model: EfficientNet-Lite0 at 224 px, 15 epochs (~30 min on 2 cores)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro prepare
	$(BIN)/zoo train crop_disease experiment=crop_lite0_full $(TRAIN_FLAGS)
	$(BIN)/zoo evaluate crop_disease experiment=crop_lite0_full
	$(BIN)/zoo report crop_disease experiment=crop_lite0_full
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro index

full-mt: data  ## translation `full` preset: 10,200 updates, FLORES dev trains too, mean of 5 epochs (2 CPU cores: ~36 min of updates, ~45 min to train, ~7 min to score)
	$(BIN)/zoo prepare translation experiment=mt_full $(MT_FULL_ARGS)
	$(BIN)/zoo train translation experiment=mt_full $(MT_FULL_ARGS) $(TRAIN_FLAGS)
	$(BIN)/zoo evaluate translation experiment=mt_full $(MT_FULL_ARGS)
	$(BIN)/zoo report translation experiment=mt_full $(MT_FULL_ARGS)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro index

full-speech: data  ## speech `full` preset: crnn, 10 epochs per language (about 1 h for both on 2 CPU cores)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro prepare@speech
	$(MAKE) speech-full-lang LANG_ARGS="data.language=hau"
	$(MAKE) speech-full-lang LANG_ARGS='data.language=yor data.batch_size=4 data.warp=[1.0,1.0] data.freq_masks=0 data.time_masks=0'
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro index

speech-full-lang:
	$(BIN)/zoo train speech experiment=speech_full $(LANG_ARGS) $(SPEECH_FULL_ARGS) $(TRAIN_FLAGS)
	$(BIN)/zoo evaluate speech experiment=speech_full $(LANG_ARGS) $(SPEECH_FULL_ARGS)
	$(BIN)/zoo report speech experiment=speech_full $(LANG_ARGS) $(SPEECH_FULL_ARGS)

test: install  ## install and run the test suite
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

lint: install  ## ruff check + format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: install  ## run the benchmarks (prints tables)
	$(BIN)/python benchmarks/trainer_throughput.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/speech_rtf.py
	@if [ -f data/processed/doc_fraud/ocr.jsonl ]; then $(BIN)/python benchmarks/doc_fraud_heads.py; \
	else echo "doc_fraud_heads.py needs the prepared corpus: run 'make repro' (or zoo fetch/prepare doc_fraud) first"; fi
	@if [ -f models/translation/pre_nano/weights.safetensors ]; then $(BIN)/python benchmarks/mt_attention.py; \
	else echo "mt_attention.py needs the translation default: run 'make repro' first"; fi
	@if [ -f models/translation/pre_nano/weights.safetensors ]; then $(BIN)/python benchmarks/mt_decode.py; \
	else echo "mt_decode.py needs the translation default: run 'make repro' first"; fi
	@if [ -f models/translation/pre_nano/weights.safetensors ]; then $(BIN)/python benchmarks/mt_step.py; \
	else echo "mt_step.py needs the translation default: run 'make repro' first"; fi
	@if [ -f data/processed/translation/summary.json ]; then $(BIN)/python benchmarks/mt_setup.py; \
	else echo "mt_setup.py needs the prepared translation corpus: run 'make repro' first"; fi

lab: install  ## start JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks

clean:  ## remove caches (keeps .venv and data)
	rm -rf .pytest_cache .ruff_cache
