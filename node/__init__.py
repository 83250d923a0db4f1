"""idnode: the asyncio service (settings, wiring, fronts, resolver, CLI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("idnode")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
