"""Shared fixtures. Tests run against the installed wheels (make test builds them)."""

from __future__ import annotations

import pytest

import bedrock_cp_native


@pytest.fixture(scope="session", autouse=True)
def _native_is_release() -> None:
    # Tests of timing-sensitive behaviour assume the optimized core that users get.
    assert bedrock_cp_native.build_profile == "release", "run `make setup`: native is a debug build"


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh uvloop event loop (no plugin needed)."""
    import inspect

    import uvloop

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    uvloop.run(pyfuncitem.obj(**kwargs))
    return True
