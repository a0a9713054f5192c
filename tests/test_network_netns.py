"""Cross-machine bus test: forwarder, publisher and subscriber in three network namespaces.

The namespaces and their veth links are created by the test (as root) and
deleted afterwards; traffic stays inside them (192.168.241.0/24 and
192.168.242.0/24 exist only there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import child_env

COUNT = 10_000
PORT = 26000

_SUB = """
import json, sys, time
from mcl.network import Subscriber
count = int(sys.argv[2])
with Subscriber("netns", bus=sys.argv[1], hwm=2 * count) as sub:
    print("ready", flush=True)
    seqs, values = [], []
    deadline = time.monotonic() + 60
    while len(seqs) < count and time.monotonic() < deadline:
        for r in sub.recv_batch(1000, timeout=0.5):
            seqs.append(r.sequence)
            values.append(int(r.payload))
    while sub.recv(timeout=0.5) is not None:
        pass
    print(json.dumps({"n": len(seqs), "in_order": seqs == list(range(count)) and values == seqs,
                      "lost": sub.lost}), flush=True)
"""

_PUB = """
import sys
from mcl.network import Publisher
count = int(sys.argv[2])
with Publisher(sys.argv[1], hwm=2 * count, close_timeout=20) as pub:
    if not pub.wait_for_subscribers(1, timeout=30):
        sys.exit("no subscriber attached")
    for i in range(count):
        pub.publish("netns", b"%d" % i)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture()
def namespaces() -> Iterator[dict[str, str]]:
    """Three namespaces: fwd linked to pub (192.168.241.0/24) and to sub (192.168.242.0/24)."""
    if os.geteuid() != 0:
        pytest.skip("building network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("the 'ip' command (iproute2) is not installed")
    tag = str(os.getpid())
    ns = {"fwd": f"mclfw{tag}", "pub": f"mclpb{tag}", "sub": f"mclsb{tag}"}
    created: list[str] = []
    try:
        for name in ns.values():
            try:
                _ip("netns", "add", name)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace: {exc.stderr.strip()}")
            created.append(name)
        for side, net in (("pub", "241"), ("sub", "242")):
            a, b = f"mv{tag}{side[0]}a", f"mv{tag}{side[0]}b"
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", ns["fwd"])
            _ip("link", "set", b, "netns", ns[side])
            _ip("-n", ns["fwd"], "addr", "add", f"192.168.{net}.1/24", "dev", a)
            _ip("-n", ns[side], "addr", "add", f"192.168.{net}.2/24", "dev", b)
            _ip("-n", ns["fwd"], "link", "set", a, "up")
            _ip("-n", ns[side], "link", "set", b, "up")
        for name in ns.values():
            _ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


@pytest.mark.netns
@pytest.mark.slow
def test_bus_across_three_namespaces(namespaces: dict[str, str]) -> None:
    """10 000 messages go publisher -> forwarder -> subscriber across namespaces, complete and in order."""
    env = child_env(MCL_BUS=None)

    def start(side: str, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespaces[side], sys.executable, *argv],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    procs: list[subprocess.Popen[str]] = []
    try:
        fwd = start("fwd", "-m", "mcl.cli.bus", "--bind", f"tcp://0.0.0.0:{PORT}", "--hwm", str(2 * COUNT))
        procs.append(fwd)
        assert fwd.stdout is not None
        assert "serving bus" in fwd.stdout.readline()
        sub = start("sub", "-c", _SUB, f"tcp://192.168.242.1:{PORT}", str(COUNT))
        procs.append(sub)
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "ready"
        pub = start("pub", "-c", _PUB, f"tcp://192.168.241.1:{PORT}", str(COUNT))
        procs.append(pub)
        _, pub_err = pub.communicate(timeout=90)
        assert pub.returncode == 0, pub_err
        out, err = sub.communicate(timeout=90)
        assert sub.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"n": COUNT, "in_order": True, "lost": 0}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=20)
