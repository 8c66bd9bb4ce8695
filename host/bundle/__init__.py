"""The deployment bundle (``host/BUNDLE.md``): the import path ``vitaccel.host.bundle`` is the API.

This package re-exports the public names so that callers (the loader on the board, the exporter, the
CLI, tests) keep importing from ``vitaccel.host.bundle`` whatever module the code sits in.
"""
from vitaccel.host.bundle.container import *  # noqa: F401,F403
from vitaccel.host.bundle.container import __all__  # noqa: F401
