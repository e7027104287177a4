# dropverify — two commands set everything up on a fresh machine with only python3:
#   make verify   create .venv, install, verify every reference variant, write reports/
#   make test     create .venv if needed, install dev extras (+ torch, keras, jax, tensorflow-cpu), run pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DV     := $(VENV)/bin/dropverify
SEED   ?= 20261126

.PHONY: venv install install-dev install-thirdparty verify verify-thirdparty sweeps test test-slow test-nightly test-frameworks test-fast quality bench clean scan scan-corpus reports repro

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install --quiet -e .

# The adapters' tests run for real: torch + torchvision + timm ([vision] pins torch 2.14.1 with
# torchvision 0.29.1, whose wheels lie on disk here), Keras 3 on the torch backend in-process and on jax and
# tensorflow in subprocesses, JAX (flax, equinox) and TensorFlow (tensorflow-cpu, ~50 s to install, ~10 s to import).
install-dev: $(PY)
	$(PIP) install --quiet -e ".[dev,vision,keras,jax,tf,hf]"

install-thirdparty: $(PY)
	$(PIP) install --quiet -e ".[vision,keras,jax,tf,hf]"

verify: install
	$(DV) verify --reference --seed $(SEED) --time-budget 0 --jobs 2 --out reports

# Third-party layers deviate (that is the point): exit 1 (some FAIL/ERROR) still means the reports were
# written; only a usage error (exit 2) or a crash fails this target. No time budget (--time-budget 0): the
# call counts, hence the reports, are the same on any machine.
verify-thirdparty: install-thirdparty
	KERAS_BACKEND=torch $(DV) verify-thirdparty --seed $(SEED) --time-budget 0 --jobs 2 --out reports/thirdparty; test $$? -le 1

# Default sweeps (issue 9) of the reference and of library layers: reports/sweeps/<target>.md (+ .png, .json).
# A FAIL (exit 1) is a finding the report shows; only a usage error or a crash fails this target.
SWEEP_TARGETS ?= numpy:dropout torch:Dropout torch:Dropout2d tf:nn.dropout
sweeps: install-thirdparty
	mkdir -p reports/sweeps
	for t in $(SWEEP_TARGETS); do \
	  KERAS_BACKEND=torch $(DV) run $$t --sweep --seed $(SEED) --time-budget 0 --report reports/sweeps/$$(echo $$t | tr ':[]' '___').md; \
	  test $$? -le 1 || exit 1; \
	done

test: install-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider --durations=20 -n auto --dist loadfile -m "not frameworks and not slow"

# The 200-seed measurements of false-alarm and false-pass rates (tests/meta; .ci/run runs this after `make test`),
# but the heaviest ones (tests/conftest.py NIGHTLY): `make test-nightly` runs those (~65 CPU-minutes)
test-slow: install-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider --durations=20 -n auto --dist loadfile -m "slow and not frameworks and not nightly"

test-nightly: install-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider --durations=20 -n auto --dist load -m "nightly and not frameworks"

# JAX, TensorFlow and Keras on every backend (torch in-process; .ci/run runs this after `make test`)
test-frameworks: install-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider --durations=20 -n auto --dist loadfile -m frameworks

quality: install-dev
	KERAS_BACKEND=torch $(PY) -m dropverify.quality --seed $(SEED) --out reports
	$(PY) -m benchmarks.long_horizon --out reports/long_horizon.md

bench: install-dev
	$(PY) -m benchmarks.run

# The committed scan reports (docs/frameworks.md): timm's ViT-Tiny/16 at 32 x 32, keras.applications MobileNet
# (weights=None) at 32 x 32 on Keras-on-torch, a Flax NNX transformer block. INCONCLUSIVE sites exit 0,
# a FAIL exits 1 (the report still written); only a usage error or a crash fails this target.
scan: install-thirdparty
	mkdir -p reports/scan
	KERAS_BACKEND=torch $(DV) scan examples/scan/scan_models.py:timm_vit --shape 64,3,32,32 --time-budget 0 \
	  --report reports/scan/timm_vit_tiny.md; test $$? -le 1
	KERAS_BACKEND=torch $(DV) scan examples/scan/keras_models.py:mobilenet --shape 8,32,32,3 --time-budget 0 \
	  --report reports/scan/keras_mobilenet.md; test $$? -le 1
	$(DV) scan examples/scan/nnx_models.py:transformer_block --shape 8,8,16 --time-budget 0 \
	  --report reports/scan/nnx_transformer_block.md; test $$? -le 1

# The corpus of real library models (examples/scan/corpus.py: torchvision, timm, Hugging Face from config classes
# with eager and sdpa attention, an LSTM LM; no weights): reports/scan/<name>.md, the same bytes on a rerun.
# The quick battery in situ (--check quick: rate, scale, values, mask structure, hashes, eval, gradient, DropBlock
# map) at the scan's 5,000-call budget keeps the 19 models near 10 minutes; `make scan` shows the full battery.
CORPUS ?= tv_efficientnet_b0 tv_convnext_tiny tv_swin_t tv_mobilenet_v3_small tv_vit_b_16 timm_resnet18 \
  timm_convnext_atto timm_efficientnet_b0 hf_bert_eager hf_bert_sdpa hf_gpt2_eager hf_gpt2_sdpa hf_vit_eager \
  hf_vit_sdpa hf_t5_eager hf_t5_sdpa hf_llama_eager hf_llama_sdpa lstm_lm
scan-corpus: install-thirdparty
	mkdir -p reports/scan
	for m in $(CORPUS); do \
	  KERAS_BACKEND=torch $(DV) scan examples/scan/corpus.py:$$m --input examples/scan/corpus.py:$${m}_input \
	    --check quick --time-budget 0 --quiet --report reports/scan/$$m.md; \
	  test $$? -le 1 || exit 1; \
	done

# Every committed report, from the current harness: each carries its harness fingerprint (dropverify/provenance.py)
# and tests/test_report_fingerprint.py fails when one is stale. Hours on two cores (quality, the sweeps, the bench);
# bench.md measures the machine and so differs from run to run; every other report is the same bytes on any machine
# for the same harness (docs/usage.md#reproducible-reports).
reports: verify repro quality verify-thirdparty sweeps scan scan-corpus bench

# A small reference run that tests/test_reproducible_reports.py regenerates and compares byte for byte
repro: install
	$(DV) verify --reference --variant dropout --variant spatial_dropout_1d --seed $(SEED) --time-budget 0 --max-calls 500 --out reports/repro

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
