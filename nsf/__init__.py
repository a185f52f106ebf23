"""nsf: Natural Spectral Fusion (arXiv 2509.04713) and its reproducible companion.

``import nsf`` needs only torch and numpy: the optimizer and the p schedules are here;
simulations, data, training and the book tooling live in submodules that import their own extras.
``nsf.NSF``, ``nsf.PScheduler`` and ``nsf.schedules`` are imported on first use, so the command
line (``python -m nsf``) answers a bad parameter before torch is loaded.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nsf")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["NSF", "PScheduler", "__version__", "schedules"]

#: name -> (module, attribute of it, or None for the module itself)
_LAZY = {
    "NSF": ("nsf.optim", "NSF"),
    "PScheduler": ("nsf.schedules", "PScheduler"),
    "schedules": ("nsf.schedules", None),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nsf' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    module = importlib.import_module(module)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
