"""nsf: Natural Spectral Fusion (arXiv 2509.04713) and its reproducible companion.

``import nsf`` needs only torch and numpy: the optimizer and the p schedules are here;
simulations, data, training and the book tooling live in submodules that import their own extras.
"""

from importlib.metadata import PackageNotFoundError, version

from nsf import schedules
from nsf.optim import NSF
from nsf.schedules import PScheduler

try:
    __version__ = version("nsf")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["NSF", "PScheduler", "__version__", "schedules"]
