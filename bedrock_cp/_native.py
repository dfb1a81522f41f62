"""Import of the native core, checked against this package's version.

bedrock-cp and bedrock-cp-native are released in lockstep: the Python code
relies on the exact native API of its own version. A mismatch (for example a
stale native wheel left in a virtualenv) fails here, at import, with a message
that says what to reinstall, instead of failing later in an obscure way.
"""

from ._version import __version__


class NativeVersionError(ImportError):
    """bedrock-cp-native is missing or not the version bedrock-cp needs."""


try:
    import bedrock_cp_native as native
except ImportError as exc:  # pragma: no cover - exercised by packaging checks
    raise NativeVersionError(
        f"bedrock-cp {__version__} needs the native wheel bedrock-cp-native=={__version__}, "
        f"which is not installed ({exc}). Install it: pip install bedrock-cp-native=={__version__}"
    ) from exc


def check_native_version(found: str, expected: str = __version__) -> None:
    """Raise NativeVersionError unless ``found`` is exactly ``expected``."""
    if found != expected:
        raise NativeVersionError(
            f"bedrock-cp {expected} needs bedrock-cp-native=={expected}, "
            f"but {found} is installed: pip install --force-reinstall bedrock-cp-native=={expected}"
        )


check_native_version(native.__version__)

__all__ = ["NativeVersionError", "check_native_version", "native"]
