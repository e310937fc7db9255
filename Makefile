# opforge: `make demo` and `make test` are the whole quick start.
#
# PY is the interpreter everything runs with. By default a project venv (.venv) is made and torch
# $(TORCH_VERSION) installed into it if it has none; on a machine whose Python already holds torch
# (a GPU box), run e.g. `make test PY=python3`: its torch is used and nothing is installed over it.
VENV          ?= .venv
PY            ?= $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# What building and checking ops needs (the build tools and opforge[onnx]), then what the tests and lint add
# (triton: the Triton kernels' AOT compile, opforge[triton]).
RUN_DEPS      := "setuptools>=77" wheel numpy ninja onnx onnxscript onnxruntime onnx-graphsurgeon polygraphy==0.53.6
DEV_DEPS      := pytest hypothesis matplotlib onnxconverter-common ruff==0.17.6 clang-format==23.1.5 triton==3.9.0
PYTEST_ARGS   ?=
# The ops example (a) (examples/segmentation.py) uses, and the backward op of DCNv2's gradient: what make demo
# builds and checks. make build builds every op.
DEMO_OPS      := opforge::modulated_deform_conv2d opforge::modulated_deform_conv2d_backward opforge::rms_norm \
                 opforge::scaled_gelu
comma         := ,
empty         :=
space         := $(empty) $(empty)

.PHONY: deps setup build demo test lint check clean jetson jetson-toolchain

# deps: the venv, torch, RUN_DEPS and the TensorRT/ONNX Runtime headers: what make demo needs. setup adds DEV_DEPS
# and installs opforge itself into the venv (pip install -e ., which builds every op).
deps: .deps-stamp

.deps-stamp: pyproject.toml
	@if [ "$(PY)" = "$(VENV)/bin/python" ] && [ ! -x "$(PY)" ]; then python3 -m venv $(VENV); fi
	@# Pin torch explicitly: an unpinned torch resolves to a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q $(RUN_DEPS)
	@# TensorRT headers (10.14.1, from the kernel-lens wheel) into build/trt-headers: never committed.
	$(PY) -m ops.trt.headers
	@# ONNX Runtime C API headers (Debian trixie's libonnxruntime-dev, private apt config) into build/ort-headers.
	$(PY) -m ops.ort.headers
	@touch $@

setup: .setup-stamp

.setup-stamp: .deps-stamp pyproject.toml setup.py
	$(PY) -m pip install -q $(DEV_DEPS)
	$(PY) -m pip install -q --no-build-isolation -e .
	@touch $@

build: setup
	$(PY) -m ops.build
	$(PY) -m ops.build --trt
	$(PY) -m ops.ort.build

# The whole path (declare -> torch -> ONNX -> ONNX Runtime -> the TensorRT step) for the ops example (a) uses:
# each step timed, the table at the end says where the time went (tools/timed_steps.py). It runs opforge from
# this checkout and builds only DEMO_OPS (a partial build: python -m ops.build --ops); make build builds every
# op, and python -m ops.check --all then checks them all.
demo:
	@echo "make demo: builds and checks the $(words $(DEMO_OPS)) ops example (a) uses: $(DEMO_OPS)" \
	  "(make build builds every op, python -m ops.check --all then checks them all)"
	@python3 tools/timed_steps.py \
	  "install: venv, torch, dependencies, headers (make deps)" "$(MAKE) --no-print-directory deps" \
	  "build ops._C with those ops (ops.build --ops)" "$(PY) -m ops.build --ops $(subst $(space),$(comma),$(DEMO_OPS))" \
	  "build the TensorRT plugin library (same ops)" "$(PY) -m ops.build --trt" \
	  "build the ONNX Runtime op library (same ops)" "$(PY) -m ops.ort.build" \
	  "python -m ops.check --quick on those ops" "$(PY) -m ops.check --quick $(DEMO_OPS)" \
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
	rm -rf build ops/_C*.so ops/_C.build.json .deps-stamp .setup-stamp
