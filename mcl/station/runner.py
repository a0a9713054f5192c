"""The base class of user runners and the ``@command`` decorator that routes commands to methods.

A runner is a class named in the station file (``class = "hive.sensors:Scale"``);
the station runs it in a child process of its own and calls :meth:`Runner.iterate`
every ``period``::

    import mcl.station

    class Scale(mcl.station.Runner):
        def setup(self):
            self.port = open_port(self.config["port"])

        def iterate(self):
            self.publish("scale", {"grams": self.port.read()})

        @mcl.station.command("calibrate")
        def calibrate(self, data):
            return {"offset": self.port.zero()}     # the reply (JSON)

        def teardown(self):
            self.port.close()

``mcl-station send scale calibrate --data '{}'`` calls ``calibrate`` between
two iterations and prints what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

__all__ = ["Runner", "command"]

F = TypeVar("F", bound=Callable[..., Any])
_COMMAND_ATTR = "_mcl_station_command"


def command(name: str) -> Callable[[F], F]:
    """Register a runner method as the handler of command `name` (``handler(self, data) -> JSON value``)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a command name is a non-empty string")

    def mark(func: F) -> F:
        setattr(func, _COMMAND_ATTR, name)
        return func

    return mark


class Runner:
    """A unit of user code run by a station: :meth:`setup`, :meth:`iterate` every period, :meth:`teardown`.

    Attributes available from :meth:`setup` on: ``self.name`` (the unit),
    ``self.config`` (the unit's ``config`` table, merged with its
    ``config_file`` when there is one), ``self.log`` (a logger whose lines
    go to the station log). An exception in :meth:`iterate` is logged and
    counted, and the next call comes after a back-off; an exception in
    :meth:`setup` ends the unit's process (the station restarts it).
    """

    commands: ClassVar[dict[str, str]] = {}  # command name -> method name (filled from @command)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                name = getattr(value, _COMMAND_ATTR, None)
                if isinstance(name, str):
                    table[name] = attr
        cls.commands = table

    def __init__(self, name: str = "runner", config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.config: dict[str, Any] = dict(config or {})
        self.log = logging.getLogger(f"mcl.station.{name}")
        self._publish: Callable[[str, Any], None] | None = None

    # -- to override -------------------------------------------------------------------
    def setup(self) -> None:
        """Called once in the unit's process before the first iterate()."""

    def iterate(self) -> None:
        """Called every period."""

    def teardown(self) -> None:
        """Called once when the unit stops (also after a failed iterate)."""

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Called when the ``config_file`` changed, with the new merged config (default: sets self.config)."""
        self.config = config

    # -- for the runner's code -------------------------------------------------------------
    def publish(self, topic: str, message: Any) -> None:
        """Publish on the station's bus: bytes as they are, a :class:`mcl.Message` or any msgpack-able value."""
        if self._publish is None:
            raise RuntimeError("Cannot publish before the station started the runner (in setup() or later).")
        self._publish(topic, message)

    def handle(self, name: str, data: Any) -> Any:
        """Run the handler of command `name` (KeyError naming the known commands if there is none)."""
        attr = self.commands.get(name)
        if attr is None:
            known = ", ".join(sorted(set(self.commands) | {"status"}))
            raise KeyError(f"unknown command {name!r} for runner {self.name!r} (known: {known})")
        return getattr(self, attr)(data)
