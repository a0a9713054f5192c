"""The pytest plugin (mcl.testing): the example project and failure messages, run through pytester."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcl.testing import CaptureTimeout, VirtualClock

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "overspeed"


def copy_example(pytester: pytest.Pytester) -> None:
    """Copy the example project into the pytester directory (which is its root)."""
    for item in EXAMPLE.iterdir():
        if item.name in ("__pycache__", ".pytest_cache"):
            continue
        target = pytester.path / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, target)


@pytest.mark.slow
def test_example_project_passes_with_the_fixtures_only(pytester: pytest.Pytester) -> None:
    """The example project (no conftest.py) gets mcl_bus, mcl_replay and mcl_capture from the entry point, and passes."""
    copy_example(pytester)
    assert not list(pytester.path.rglob("conftest.py"))
    result = pytester.runpytest_subprocess("-q", timeout=120)
    result.assert_outcomes(passed=3)


FAILING_TESTS = '''
import os

def test_nobody_publishes(mcl_capture):
    mcl_capture.wait_for("pose", count=3, timeout=0.3)

def test_unexpected_message(mcl_bus, mcl_capture):
    import mcl
    with mcl.Publisher(bus=mcl_bus) as pub:
        assert pub.wait_for_subscribers(1, timeout=5.0)
        pub.publish("noise", b"\\x01")
    mcl_capture.wait_for("noise", timeout=5.0)
    mcl_capture.assert_no_messages("noise", within=0.05)

def test_bus_is_the_default_bus(mcl_bus):
    assert os.environ["MCL_BUS"] == mcl_bus
    print("BUS", mcl_bus)

def test_each_test_has_its_own_bus(mcl_bus):
    print("BUS", mcl_bus)
'''


@pytest.mark.slow
def test_failures_name_topic_and_counts_and_buses_are_private(pytester: pytest.Pytester) -> None:
    """A wait_for timeout names the topic and counts; assert_no_messages fails on a message; each test has its own bus."""
    pytester.makepyfile(test_failing=FAILING_TESTS)
    saved = os.environ.get("MCL_BUS")
    result = pytester.runpytest_subprocess("-q", "-s", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "mcl_capture: waited 0.3 s for 3 message(s) on topic 'pose', got 0 (received so far: nothing at all)" in out
    assert "mcl_capture: expected no message on topic 'noise', got 1" in out
    buses = [line.split()[-1] for line in result.stdout.lines if line.lstrip(".F").startswith("BUS ")]
    assert len(buses) == 2 and buses[0] != buses[1]
    assert all(b.startswith("tcp://127.0.0.1:") for b in buses)
    assert os.environ.get("MCL_BUS") == saved


def test_capture_timeout_is_an_assertion_error() -> None:
    """CaptureTimeout is an AssertionError whose message lists what did arrive."""
    error = CaptureTimeout("pose", 3, 1, 0.5, {"pose": 1, "status": 4})
    assert isinstance(error, AssertionError)
    assert str(error) == (
        "mcl_capture: waited 0.5 s for 3 message(s) on topic 'pose', got 1 (received so far: 'pose': 1, 'status': 4)"
    )
    assert (error.topic, error.wanted, error.got) == ("pose", 3, 1)


def test_virtual_clock_reads_origin_plus_elapsed() -> None:
    """The virtual clock reads the recorded UTC time in ns and float seconds."""
    clock = VirtualClock(origin_ns=1_714_550_400_000_000_000)
    clock.elapsed_ns = 2_500_000_000
    assert clock.now_ns() == 1_714_550_402_500_000_000
    assert clock() == clock.time() == 1_714_550_402.5


def test_instant_replay_of_reference_dataset_into_hooks(mcl_replay, reference_dir: Path) -> None:
    """An instant replay into a hook delivers every record in order with its recorded time, the clock in step."""
    seen = []

    def hook(record):
        seen.append((record.topic, record.elapsed_ns, mcl_replay.clock.now_ns()))

    replay = mcl_replay(reference_dir / "dataset", instant=True, hooks=[hook])
    assert replay.sent == len(seen) == 30
    elapsed = [s[1] for s in seen]
    assert elapsed == sorted(elapsed) and elapsed[0] == 0 and elapsed[-1] == 10_000_000_000
    assert all(s[2] == mcl_replay.clock.origin_ns + s[1] for s in seen)
    assert [s[0] for s in seen] == [""] * 30


@pytest.mark.slow
def test_plugin_imports_without_network_and_replay() -> None:
    """mcl.testing loads (so pytest never breaks) even when mcl.network and mcl.replay cannot be imported."""
    code = (
        "import sys\n"
        "sys.modules['mcl.network'] = None\n"
        "sys.modules['mcl.replay'] = None\n"
        "import mcl.testing\n"
        "assert 'mcl.network' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
