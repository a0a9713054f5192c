"""mcl's public names: ``mcl.__all__`` is exactly what ``import mcl`` offers, and every name resolves."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import mcl

# Documented in docs/user-guide.md and docs/architecture.md: must stay exported.
DOCUMENTED = {
    "MclError", "LogError", "LogNotFound", "LogExistsError", "LogFormatError", "LogDamageWarning",
    "BusError", "ReplayError", "RecordError", "MessageError",
    "Message", "GenericMessage", "encode", "decode", "get_message_type",
    "Record", "LogSummary", "open_log", "LogReader", "LogWriter", "ReadFile", "ReadDirectory",
    "dump_to_list", "dump_to_array", "dump_to_csv",
    "Publisher", "Subscriber", "BufferData", "ScheduleBroadcasts", "Replay", "Recorder",
    "ReplayOptions", "RecordOptions",
}


def _public(module: ModuleType) -> set[str]:
    """Names of `module` that are neither private nor submodules (``mcl.network`` is a package, not a name)."""
    return {n for n in dir(module) if not n.startswith("_") and not isinstance(getattr(module, n), ModuleType)}


def test_all_is_exactly_the_public_names() -> None:
    """mcl.__all__ lists every public name once and nothing else (no helper leaks such as 'Any')."""
    names = list(mcl.__all__)
    assert len(names) == len(set(names)), "a name is listed twice"
    assert set(names) == _public(mcl)
    assert DOCUMENTED <= set(names), f"documented but not exported: {sorted(DOCUMENTED - set(names))}"


def test_every_public_name_resolves_to_mcl_code() -> None:
    """Each name of __all__ is an attribute of mcl defined in the mcl package."""
    for name in mcl.__all__:
        value = getattr(mcl, name)
        assert getattr(value, "__module__", "mcl").startswith("mcl"), (name, value)
    assert isinstance(mcl.__version__, str)


@pytest.mark.slow
def test_import_mcl_loads_neither_zmq_nor_numpy() -> None:
    """``import mcl`` stays light: the names are imported on first use."""
    code = "import sys, mcl; print(sorted(m for m in ('zmq', 'numpy', 'mcl.network') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_options_objects_are_the_engines_inputs() -> None:
    """mcl.ReplayOptions / mcl.RecordOptions are the classes Replay and Recorder take (one options object each)."""
    from mcl.recorder import RecordOptions
    from mcl.replay.options import ReplayOptions

    assert mcl.ReplayOptions is ReplayOptions and mcl.RecordOptions is RecordOptions
    replay = mcl.Replay(str(__import__("pathlib").Path(__file__).parent.parent / "sample_logs" / "vehicle"),
                        mcl.ReplayOptions(speed=2.0, publish=False))
    assert replay.options.speed == 2.0
    replay.close()
