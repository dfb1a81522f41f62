"""The version of bedrock-cp; the native wheel must carry exactly the same one."""

__version__ = "0.1.0"
