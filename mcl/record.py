"""Deprecated alias of :mod:`mcl.recorder` (the recorder's module was renamed): import from there."""
import warnings; warnings.warn("mcl.record is renamed mcl.recorder", DeprecationWarning, stacklevel=2)  # noqa: E702
from mcl.recorder import *  # noqa: E402,F401,F403
