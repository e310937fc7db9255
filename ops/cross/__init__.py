"""Cross-building opforge's native artefacts for another machine (today: Jetson, aarch64 + sm_87) and
checking them under emulation (qemu user mode). See README, "Deploying to a Jetson".

    toolchain.py   the cross toolchain, installed into build/jetson/toolchain (python -m ops.cross.toolchain)
    target.py      the targets (jetson-orin = aarch64-linux + sm_87) and what builds for each
    build.py       every artefact of an op package for a target, with a manifest (python -m ops.build --target)
    emulate.py     running aarch64 programs here: qemu-aarch64 with the cross sysroot; readelf / cuobjdump
    remote_harness.py, harness_server.cpp
                   the plugin host harness cross-compiled and driven from this machine's Python under qemu
    verify.py      the emulated checks tests/jetson runs, and the table `make jetson` prints
"""
