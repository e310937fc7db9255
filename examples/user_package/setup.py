"""The build hook: opforge generates the glue for mypkg.ops and builds it into mypkg/ops/_C (with its build
record); the kernel sources ship in the wheel as package data."""

from setuptools import find_packages, setup

from ops.build import BuildExtension, extension

setup(
    packages=find_packages(include=["mypkg", "mypkg.*"]),
    package_data={"mypkg": ["csrc/*/*.h", "csrc/*/*.cpp", "csrc/*/*.cu"]},
    ext_modules=[extension("mypkg.ops")],
    cmdclass={"build_ext": BuildExtension},
)
