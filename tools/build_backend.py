"""PEP 517 backend for `pip install -e .`: setuptools, plus the installed environment on sys.path.

pip builds in an isolated environment by default. Listing torch as a build requirement there would
download another torch (GBs, and an ABI mismatch with the one the kernels must run in). Instead the
build imports the torch that is installed in the environment pip runs for: its site-packages are
appended (after the isolated ones, so the isolated setuptools still wins)."""

import site
import sys
import sysconfig

for path in [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]:
    if path not in sys.path:
        sys.path.append(path)

from setuptools.build_meta import *  # noqa: E402, F403
