# opforge: `make demo` and `make test` are the whole quick start.
#
# PY is the interpreter everything runs with. By default a project venv (.venv) is made and torch
# $(TORCH_VERSION) installed into it if it has none; on a machine whose Python already holds torch
# (a GPU box), run e.g. `make test PY=python3`: its torch is used and nothing is installed over it.
VENV          ?= .venv
PY            ?= $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DEPS          := "setuptools>=77" wheel numpy ninja pytest hypothesis onnx onnxscript onnxruntime onnx-graphsurgeon \
                 polygraphy==0.53.6 matplotlib onnxconverter-common ruff==0.17.6 clang-format==23.1.5 triton==3.9.0
PYTEST_ARGS   ?=

.PHONY: setup build demo test lint check clean jetson jetson-toolchain

setup: .setup-stamp

.setup-stamp: pyproject.toml setup.py
	@if [ "$(PY)" = "$(VENV)/bin/python" ] && [ ! -x "$(PY)" ]; then python3 -m venv $(VENV); fi
	@# Pin torch explicitly: an unpinned torch resolves to a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q $(DEPS)
	@# TensorRT headers (10.14.1, from the kernel-lens wheel) into build/trt-headers: never committed.
	$(PY) -m ops.trt.headers
	@# ONNX Runtime C API headers (Debian trixie's libonnxruntime-dev, private apt config) into build/ort-headers.
	$(PY) -m ops.ort.headers
	$(PY) -m pip install -q --no-build-isolation -e .
	@touch $@

build: setup
	$(PY) -m ops.build
	$(PY) -m ops.build --trt
	$(PY) -m ops.ort.build

# Each step timed; the table at the end says where the time went (tools/timed_steps.py).
demo:
	@python3 tools/timed_steps.py \
	  "install: venv, torch, dependencies, headers (make setup)" "$(MAKE) --no-print-directory setup" \
	  "native builds: ops._C, TensorRT plugins, ORT ops (make build)" "$(MAKE) --no-print-directory build" \
	  "python -m ops.check --all" "$(PY) -m ops.check --all" \
	  "example (a): segmentation, torch -> ONNX -> ORT -> TensorRT step" "$(PY) examples/segmentation.py"

test: setup build
	$(PY) -m pytest $(PYTEST_ARGS)

# Style: ruff's lint and formatter (configuration in pyproject.toml) and clang-format over the C/C++/CUDA
# files (.clang-format). CI runs this before the tests; .pre-commit-config.yaml runs the same checks.
# clang-format through the interpreter (PyPI's clang-format wheel), so PY=python3 finds the one it installed.
CXX_SOURCES   = $(shell git ls-files '*.c' '*.cc' '*.cpp' '*.h' '*.hpp' '*.cu' '*.cuh' 2>/dev/null)
CLANG_FORMAT  = $(PY) -c "import clang_format; clang_format.clang_format()"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(CLANG_FORMAT) --dry-run -Werror $(CXX_SOURCES)

# Jetson (aarch64 + sm_87), README "Deploying to a Jetson": the cross toolchain into build/jetson/toolchain
# (apt: g++-aarch64-linux-gnu, qemu-user, binfmt-support; Debian trixie's nvidia-cuda-toolkit 12.4 and PyPI's
# aarch64 wheels, unpacked there), every artefact for JetPack 6 and 7, the emulated checks (tests/jetson, full),
# then the table. TensorRT 10.3 headers: OPFORGE_TRT_10_3_INCLUDE=DIR or OPFORGE_TENSORRT_GIT=<TensorRT clone>.
jetson-toolchain: setup
	$(PY) -m ops.cross.toolchain

jetson: setup jetson-toolchain
	$(PY) -m ops.build
	$(PY) -m ops.build --target jetson-orin --jetpack 6,7
	@rm -f build/jetson/results.json
	@OPFORGE_JETSON_FULL=1 $(PY) -m pytest tests/jetson $(PYTEST_ARGS); status=$$?; \
	  echo; $(PY) -m ops.cross.verify --table || status=1; exit $$status

clean:
	rm -rf build ops/_C*.so ops/_C.build.json .setup-stamp
