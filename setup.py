"""Builds the Cython extensions of bedrock_cp (everything else is in pyproject.toml).

Switches (environment variables), after uvloop's build_ext options:
  BEDROCK_CYTHON_ANNOTATE=1   write the HTML annotation next to each .pyx
  BEDROCK_CYTHON_LINETRACE=1  compile with line tracing (coverage, profiling)
  BEDROCK_CYTHON_DEBUG=1      -O0 -g, for gdb
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["_framing", "_timers"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def extensions() -> list[Extension]:
    directives = {"language_level": "3", "embedsignature": True}
    macros = []
    if _flag("BEDROCK_CYTHON_LINETRACE"):
        directives["linetrace"] = True
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    compile_args = ["-O0", "-g"] if _flag("BEDROCK_CYTHON_DEBUG") else ["-O2"]
    exts = [
        Extension(
            f"bedrock_cp.{name}",
            [f"bedrock_cp/{name}.pyx"],
            define_macros=macros,
            extra_compile_args=compile_args,
        )
        for name in MODULES
    ]
    return cythonize(
        exts,
        compiler_directives=directives,
        annotate=_flag("BEDROCK_CYTHON_ANNOTATE"),
    )


setup(ext_modules=extensions())
