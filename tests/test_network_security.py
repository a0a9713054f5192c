"""Tests of CURVE security on the bus: known keys talk, an unknown key is refused and logged."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from conftest import wait_until

from mcl.exceptions import BusError
from mcl.network import CurveClient, CurveServer, Forwarder, Publisher, Subscriber, make_keys


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    """A server key pair, an accepted client and a stranger; clients dir holds only the accepted key."""
    server_public, server_secret = make_keys(tmp_path / "server", "server")
    good_public, good_secret = make_keys(tmp_path / "good", "good")
    _, bad_secret = make_keys(tmp_path / "bad", "bad")
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "good.key").write_bytes(good_public.read_bytes())
    return {"server_public": server_public, "server_secret": server_secret, "clients": clients,
            "good": good_secret, "bad": bad_secret}


def test_curve_known_clients_talk(keys: dict[str, Path]) -> None:
    """Publisher and subscriber with an accepted key exchange messages through a CURVE forwarder."""
    good = CurveClient(keys["good"], keys["server_public"])
    with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], keys["clients"])) as forwarder:
        with Subscriber(bus=forwarder.address, curve=good) as sub, Publisher(
            forwarder.address, curve=good, close_timeout=0
        ) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("secret", b"payload")
            got = sub.recv(timeout=5)
            assert got is not None and got.payload == b"payload"


@pytest.mark.slow  # over a second: not in the fast lane
def test_curve_unknown_key_is_refused_and_logged(keys: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """A client whose key is not accepted gets nothing through, and the refusal is logged."""
    good = CurveClient(keys["good"], keys["server_public"])
    bad = CurveClient(keys["bad"], keys["server_public"])
    caplog.set_level(logging.WARNING, logger="mcl.network")
    with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], keys["clients"])) as forwarder:
        with Subscriber(bus=forwarder.address, curve=good) as sub, Publisher(
            forwarder.address, curve=bad, close_timeout=0
        ) as intruder:
            assert intruder.wait_for_subscribers(1, timeout=1.0) is False
            intruder.publish("secret", b"forged")
            assert sub.recv(timeout=0.3) is None
            wait_until(lambda: any("refused" in r.getMessage() for r in caplog.records), 10, 0.05)
    refusals = [r for r in caplog.records if "refused a bus client" in r.getMessage()]
    assert refusals and refusals[0].levelno == logging.WARNING
    assert str(keys["clients"]) in refusals[0].getMessage()


@pytest.mark.slow  # over a second: not in the fast lane
def test_curve_plain_client_gets_nothing(keys: dict[str, Path]) -> None:
    """A client without keys cannot attach to a CURVE bus."""
    with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], keys["clients"])) as forwarder:
        with Subscriber(bus=forwarder.address) as sub, Publisher(forwarder.address, close_timeout=0) as pub:
            assert pub.wait_for_subscribers(1, timeout=0.5) is False
            pub.publish("x", b"plain")
            assert sub.recv(timeout=0.2) is None


def test_curve_bad_key_files(tmp_path: Path, keys: dict[str, Path]) -> None:
    """Missing or public-only certificates give a BusError naming the file."""
    with pytest.raises(BusError, match="cannot read a CURVE certificate"):
        Publisher("tcp://127.0.0.1:1", curve=CurveClient(tmp_path / "missing", keys["server_public"]))
    with pytest.raises(BusError, match="holds no secret key"):
        Subscriber(bus="tcp://127.0.0.1:1", curve=CurveClient(keys["server_public"], keys["server_public"]))
    with pytest.raises(BusError, match="no such directory"):
        Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], tmp_path / "nope"))


def test_curve_keys_from_environment(keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """$MCL_CURVE_SECRET and $MCL_CURVE_SERVER configure clients with no code change."""
    monkeypatch.setenv("MCL_CURVE_SECRET", str(keys["good"]))
    monkeypatch.setenv("MCL_CURVE_SERVER", str(keys["server_public"]))
    with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], keys["clients"])) as forwarder:
        with Subscriber(bus=forwarder.address) as sub, Publisher(forwarder.address, close_timeout=0) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            pub.publish("env", b"ok")
            got = sub.recv(timeout=5)
            assert got is not None and got.payload == b"ok"
    monkeypatch.delenv("MCL_CURVE_SERVER")
    with pytest.raises(BusError, match="set both"):
        Publisher("tcp://127.0.0.1:1")


@pytest.mark.slow
def test_mcl_bus_key_files_and_bad_certificate(tmp_path: Path) -> None:
    """mcl-bus --make-keys keeps the secret private and never replaces a key; a bad certificate exits 1 at once."""
    import stat
    import subprocess
    import sys

    def bus(*argv: str) -> subprocess.CompletedProcess[str]:
        code = "from mcl.cli.bus import run; run()"
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=30)

    base = tmp_path / "keys" / "server"
    assert bus("--make-keys", str(base)).returncode == 0
    secret = base.with_name("server.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    before = secret.read_bytes()
    again = bus("--make-keys", str(base))
    assert again.returncode == 1 and again.stderr.startswith("mcl-bus: error: ") and "already exists" in again.stderr
    assert secret.read_bytes() == before
    not_a_cert = tmp_path / "passwd"
    not_a_cert.write_text("root:x:0:0:root:/root:/bin/bash\n")
    bad = bus("--bind", "tcp://127.0.0.1:0", "--curve-secret", str(not_a_cert), "--curve-clients", str(tmp_path))
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.count("\n") == 1 and "cannot read a CURVE certificate" in bad.stderr


def test_make_keys_never_replaces_a_pair_and_hides_the_secret(tmp_path: Path) -> None:
    """make_keys refuses an existing pair (the secret would be lost) and writes the secret 0600."""
    public, secret = make_keys(tmp_path, "bus")
    assert secret.stat().st_mode & 0o777 == 0o600
    before = secret.read_bytes()
    with pytest.raises(BusError, match="already exists"):
        make_keys(tmp_path, "bus")
    assert secret.read_bytes() == before


def test_forwarder_with_a_bad_certificate_fails_at_once(tmp_path: Path) -> None:
    """A forwarder given a file that is not a certificate raises BusError and does not hang on close."""
    bad = tmp_path / "bad.key_secret"
    bad.write_text("not a certificate\n")
    clients = tmp_path / "clients"
    clients.mkdir()
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(secret_file=bad, clients_dir=clients)):
                outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    # In a daemon thread: a regression would hang here, and must fail instead.
    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "Forwarder with a bad certificate hung"
    assert len(outcome) == 1 and isinstance(outcome[0], BusError), outcome


def test_curve_refused_client_is_told(keys: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """The refused client itself logs one line saying the forwarder refused its key (not a silent 'sent')."""
    bad = CurveClient(keys["bad"], keys["server_public"])
    caplog.set_level(logging.WARNING, logger="mcl.network")
    with Forwarder("tcp://127.0.0.1:0", curve=CurveServer(keys["server_secret"], keys["clients"])) as forwarder:
        with Publisher(forwarder.address, curve=bad, close_timeout=0, startup_wait=0.2) as intruder:
            wait_until(lambda: any("refused this" in r.getMessage() for r in caplog.records), 10, message="the refusal line")
            assert intruder.connected is False
    told = [r.getMessage() for r in caplog.records if "refused this" in r.getMessage()]
    assert told and told[0] == f"the forwarder at {forwarder.address} refused this publisher's CURVE key; still trying"
