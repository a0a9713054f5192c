"""Optional CURVE encryption and authentication of a bus.

Keys live in files in the ZeroMQ certificate format (``zmq.auth``): ``NAME.key``
holds a public key, ``NAME.key_secret`` the public and the secret key.
:func:`make_keys` (or ``mcl-bus --make-keys DIR/NAME``) writes a pair.

* The forwarder is the CURVE server: :class:`CurveServer` names its secret
  certificate and a directory of the public certificates of the clients it
  accepts. A client whose key is not there is refused, and the refusal is
  logged (logger ``mcl.network``, level WARNING).
* Publishers and subscribers are CURVE clients: :class:`CurveClient` names the
  program's secret certificate and the forwarder's public certificate. When no
  ``curve`` option is given they read ``$MCL_CURVE_SECRET`` and
  ``$MCL_CURVE_SERVER`` (two file paths), so command line programs need no flag.

A bus without keys (the loopback default) uses no security at all.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from mcl.exceptions import BusError

__all__ = ["ENV_SECRET", "ENV_SERVER", "CurveClient", "CurveServer", "make_keys", "client_from_env"]

log = logging.getLogger("mcl.network")

ENV_SECRET = "MCL_CURVE_SECRET"  # path of this program's secret certificate
ENV_SERVER = "MCL_CURVE_SERVER"  # path of the forwarder's public certificate


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise BusError(f"{path}: cannot read a CURVE certificate: {exc}") from exc
    if secret and not secret_key:
        raise BusError(f"{path}: holds no secret key (use the .key_secret file)")
    return public, secret_key


def make_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair DIR/NAME.key and DIR/NAME.key_secret; return (public, secret).

    An existing pair is never replaced (BusError): that would destroy a secret
    key. The secret file is readable by its owner only.
    """
    directory = Path(directory)
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise BusError(f"{directory / name}: a key pair needs a file name (DIR/NAME makes DIR/NAME.key)")
    taken = [f for f in (directory / f"{name}.key", directory / f"{name}.key_secret") if f.exists()]
    if taken:
        raise BusError(f"{taken[0]}: already exists; not replacing a key (remove it first to make a new pair)")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


@dataclass(frozen=True, slots=True)
class CurveClient:
    """The keys of a publisher or subscriber on a CURVE bus."""

    secret_file: Path  # this program's certificate with its secret key (NAME.key_secret)
    server_file: Path  # the forwarder's public certificate (NAME.key)

    def apply(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE client of the forwarder (before connect)."""
        public, secret = _load(Path(self.secret_file), secret=True)
        server, _ = _load(Path(self.server_file), secret=False)
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_serverkey = server


def client_from_env() -> CurveClient | None:
    """The CurveClient named by $MCL_CURVE_SECRET and $MCL_CURVE_SERVER, or None."""
    secret = os.environ.get(ENV_SECRET)
    server = os.environ.get(ENV_SERVER)
    if not secret and not server:
        return None
    if not (secret and server):
        raise BusError(f"set both {ENV_SECRET} and {ENV_SERVER} (CURVE keys), or neither")
    return CurveClient(Path(secret), Path(server))


@dataclass(frozen=True, slots=True)
class CurveServer:
    """The keys of a forwarder that encrypts and authenticates its bus."""

    secret_file: Path  # the forwarder's certificate with its secret key (NAME.key_secret)
    clients_dir: Path  # directory of the public certificates (*.key) of accepted clients

    def apply(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server (before bind)."""
        public, secret = _load(Path(self.secret_file), secret=True)
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def start_authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        """Start the ZAP handler of `context` that accepts only the known client keys."""
        if not Path(self.clients_dir).is_dir():
            raise BusError(f"{self.clients_dir}: no such directory of client public keys")
        auth = ThreadAuthenticator(context, log=logging.getLogger("mcl.network.zap"))
        auth.start()
        auth.configure_curve_callback("*", credentials_provider=_KeyDirectory(Path(self.clients_dir)))
        return auth


class _KeyDirectory:
    """Accepts the client keys found in a directory, re-read when an unknown key shows up."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._keys = self._read()

    def _read(self) -> frozenset[bytes]:
        try:
            return frozenset(zmq.auth.load_certificates(str(self.directory)))
        except (OSError, ValueError) as exc:
            log.warning("cannot read CURVE client keys in %s: %s", self.directory, exc)
            return frozenset()

    def callback(self, domain: str, key: bytes) -> bool:
        with self._lock:
            if key in self._keys:
                return True
            self._keys = self._read()  # a key added since start is accepted without restart
            if key in self._keys:
                return True
        log.warning(
            "refused a bus client: CURVE key %s is not in %s",
            key.decode("ascii", "replace"),
            self.directory,
        )
        return False
