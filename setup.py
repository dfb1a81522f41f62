"""Builds the Cython extensions of bedrock_cp, and gives the version and the
runtime requirements from their one source (everything else is in pyproject.toml).

Switches (environment variables), after uvloop's build_ext options:
  BEDROCK_CYTHON_ANNOTATE=1   write the HTML annotation next to each .pyx
  BEDROCK_CYTHON_LINETRACE=1  compile with line tracing (coverage, profiling)
  BEDROCK_CYTHON_DEBUG=1      -O0 -g, for gdb
"""

import os
import re
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

#: Cython modules, each beside the code that uses it.
MODULES = ["wire._framing", "raft._timers"]


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
            [f"bedrock_cp/{name.replace('.', '/')}.pyx"],
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


def version() -> str:
    """The one source of the version: bedrock_cp/_version.py."""
    text = (Path(__file__).parent / "bedrock_cp" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if match is None:
        raise SystemExit("bedrock_cp/_version.py does not define __version__")
    return match.group(1)


VERSION = version()
# Runtime requirements: ranges for users, except the native wheel, which must be
# exactly this version (checked again at import). cryptography: `bedrock-cp certs
# init` (and every local cluster) makes the CA and certificates in-process, the
# same on every platform.
DEPENDENCIES = [
    f"bedrock-cp-native=={VERSION}",
    "cryptography>=42,<60",
    "msgspec>=0.18,<1",
    # `bedrock-cp status`: tables and a live view, plain text in a pipe.
    "rich>=13,<16",
    "uvloop>=0.19,<1",
]

setup(version=VERSION, install_requires=DEPENDENCIES, ext_modules=extensions())
