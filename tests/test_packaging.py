"""The two wheels are installed in lockstep and ship their type information."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

import bedrock_cp
import bedrock_cp_native
from bedrock_cp._native import NativeVersionError, check_native_version


def test_versions_match_exactly() -> None:
    assert bedrock_cp.__version__ == bedrock_cp_native.__version__


def test_a_mismatched_native_version_is_refused_with_a_clear_message() -> None:
    with pytest.raises(NativeVersionError) as err:
        check_native_version("0.0.9", expected="0.1.0")
    message = str(err.value)
    assert "bedrock-cp-native==0.1.0" in message
    assert "0.0.9 is installed" in message


def test_native_package_ships_stub_and_marker() -> None:
    files = {p.name for p in resources.files("bedrock_cp_native").iterdir()}
    assert "py.typed" in files
    assert "_bedrock_cp_native.pyi" in files


def test_python_package_ships_stubs_for_its_cython_modules() -> None:
    assert "py.typed" in {p.name for p in resources.files("bedrock_cp").iterdir()}
    # Each Cython module sits beside the code that uses it, with its stub.
    for package, module in (("bedrock_cp.wire", "_framing"), ("bedrock_cp.raft", "_timers")):
        files = {p.name for p in resources.files(package).iterdir()}
        assert {f"{module}.pyi", f"{module}.pxd"} <= files, (package, files)


def test_exception_hierarchy() -> None:
    n = bedrock_cp_native
    assert issubclass(n.NotLeaderError, n.RaftError)
    assert issubclass(n.RaftError, n.NativeError)
    assert issubclass(n.WalCorruptError, n.WalError)
    assert issubclass(n.WalFatalError, n.WalError)
    assert issubclass(n.NativePanicError, n.NativeError)
    # A native panic must be catchable as an ordinary Exception (unlike pyo3's PanicException).
    assert issubclass(n.NativePanicError, Exception)


def test_the_version_has_one_source_and_the_native_crate_follows_it() -> None:
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cargo = tomllib.loads((root / "native" / "Cargo.toml").read_text())
    assert cargo["workspace"]["package"]["version"] == bedrock_cp.__version__
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "dependencies" not in project
    assert set(project["dynamic"]) == {"version", "dependencies"}
    setup = (root / "setup.py").read_text()
    assert re.search(r'f"bedrock-cp-native==\{VERSION\}"', setup)


def test_test_scaffolding_is_not_in_the_package() -> None:
    package = Path(bedrock_cp.__file__).parent
    shipped = {p.name for p in package.rglob("*.py")}
    assert not shipped & {"loopback.py", "faultproxy.py", "netns.py"}, shipped
