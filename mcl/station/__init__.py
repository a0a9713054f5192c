"""mcl-station: units (runners, recorders, replays, a bus, offload) declared in a TOML file, supervised and scheduled.

``Station(path_or_dict)`` runs them (``start()`` / ``stop()`` / ``status()`` /
``reload()`` / ``send()``, a context manager); ``Runner`` and ``command``
are the base class and decorator of user runners. See docs/user-guide.md.
"""

from __future__ import annotations

from mcl.station.config import StationConfig, StationConfigError, StationError, UnitConfig, load_config, parse_config
from mcl.station.runner import Runner, command
from mcl.station.station import Station

__all__ = [
    "Runner",
    "Station",
    "StationConfig",
    "StationConfigError",
    "StationError",
    "UnitConfig",
    "command",
    "load_config",
    "parse_config",
]
