"""``idnode serve --workers N``: N serving processes behind one supervisor.

Each worker is a whole ``Node`` (node.app) in its own process, with its own event loop,
cache and invalidation listener. All of them listen on the same native (UDP and TCP)
and HTTP ports with SO_REUSEPORT, and the kernel spreads clients over them (by address
and port, so one client's UDP queries keep reaching the same worker). Worker i serves
health and metrics on ``admin_port + i``, so Prometheus scrapes each one; every worker
also opens up to ``db_pool_max`` + 1 database connections, which the server must allow.

The supervisor does the one-time work before any worker starts, so that workers never
race for it: the data-dir lock, the embedded PostgreSQL and migrations
(``node_database``), the site key, the signing keys and the demo data. Workers get the
same settings with ``database_url`` set to that server's socket (they neither lock nor
own it), ``demo`` off, and every port fixed: port 0 is resolved here, once, into ports
that are free and distinct, because workers picking their own would not agree, and a
port picked by the kernel for one SO_REUSEPORT socket could be shared with another.
Ports given explicitly are checked free (binding without SO_REUSEPORT), or two nodes
would silently share them.

Workers are ``python -m node.serving.worker`` subprocesses, not multiprocessing: forking would
copy a running loop, its threads and the database pool, and spawn re-imports the main
module and pickles; a fresh interpreter whose settings arrive as data, validated by
``load_settings`` like any others, has none of that and is an ordinary process to ``ps``
and systemd. The worker's pipes are the protocol:

- stdin: one JSON line, ``{"index": i, "settings": {...}}``. It then stays open: its end
  (the supervisor exited, even by ``kill -9``) stops the worker, so no orphan keeps the
  ports.
- stdout: one JSON line, ``{"ready": {...ports}}`` once the node serves, or
  ``{"error": message}`` if it cannot start. Logs go to the shared stderr.

Everything else a worker needs is inherited: the environment (``IDNODE_KEY_PASSPHRASE``)
and the working directory; ``IDNODE_*`` settings variables are not read again, the
settings arrive whole.

Workers run in their own session, so a terminal's ^C reaches only the supervisor, which
decides the order of shutdown. Signals to the supervisor:

- SIGTERM, SIGINT: SIGTERM to every worker, SIGKILL to one still running
  ``shutdown_timeout_s`` (+ a margin for closing its pool) later; then the embedded
  server stops and the lock is released.
- SIGHUP: rolling restart. For each worker in turn a replacement starts, and once it
  reports ready the old one gets SIGTERM; SO_REUSEPORT lets both listen meanwhile. New
  workers read the key store afresh, which keeps SIGHUP's meaning (reload rotated keys).
  A replacement that does not start ends the reload and the old workers keep serving.

A worker that dies is restarted, after a backoff when it had not been up for long. A
worker that fails to start ``_MAX_FAILED_STARTS`` times in a row gives up the whole node
with the worker's own error: that is a setting or the environment, and retrying forever
would only hide it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from node import __version__
from node.demo.seed import seed_demo
from node.errors import NodeError
from node.resolution.site import load_or_create_site_key
from node.runtime.database import Database, node_database
from node.runtime.tls import server_ssl_context
from node.secrets.vault import open_vault
from node.settings import Settings, SettingsError
from node.signing.signer import build_signer
from node.templates.catalog import registry_catalog
from node.writes.service import WriteService

log = logging.getLogger("idnode.workers")

WORKER_COMMAND = (sys.executable, "-m", "node.serving.worker")  # node/serving/worker.py
_MAX_FAILED_STARTS = 3
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0
_STABLE_S = 30.0  # a worker up this long before it died restarts without backoff
_START_TIMEOUT_S = 60.0  # database connect, key decryption, binding: generous
_EXIT_MARGIN_S = 5.0  # after shutdown_timeout_s: closing the pool, leaving the interpreter
_PORT_ATTEMPTS = 20


class SupervisorError(NodeError):
    """The workers cannot be started or kept running; the message says why."""


class _StartFailed(Exception):
    """A worker exited, or went silent, before it reported ready."""


def worker_flags(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON-able flags that ``load_settings(flags=...)`` turns back into
    the same Settings (None is "not given", which for those settings is the default)."""
    out: dict[str, Any] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        out[f.name] = (
            str(value)
            if isinstance(value, Path)
            else list(value)
            if isinstance(value, tuple)
            else value
        )
    return out


@dataclass(frozen=True)
class Ports:
    handle: int
    http: int
    admin: tuple[int, ...]  # worker i's


def claim_ports(settings: Settings) -> Ports:
    """Fixed ports for every worker: each checked free, port 0 replaced by a free one,
    none shared between fronts. The probes close before the workers bind; something
    else binding in between makes a worker fail to start, with its error."""
    s = settings
    family = socket.AF_INET6 if ":" in s.bind else socket.AF_INET
    with ExitStack() as held:

        def probe(kind: socket.SocketKind, port: int, what: str, host: str = s.bind) -> int:
            # The admin ports listen on admin_bind, the others on bind.
            host_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = held.enter_context(socket.socket(host_family, kind))
            if kind == socket.SOCK_STREAM and port:
                # A leftover TIME_WAIT connection is not a listener: do not count it. (Not
                # for port 0: the kernel may then hand out a port another probe holds.)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if port == 0 or exc.errno != errno.EADDRINUSE:
                    raise SupervisorError(f"cannot bind {what} on {host}: {exc.strerror}") from None
                raise SupervisorError(
                    f"{what} port {port} on {host} is in use by another process"
                ) from None
            return int(sock.getsockname()[1])

        handle = _handle_port(s, family, probe)
        http = probe(socket.SOCK_STREAM, s.http_port, "HTTP")
        admin = tuple(
            probe(
                socket.SOCK_STREAM,
                s.admin_port + i if s.admin_port else 0,
                f"worker {i} admin",
                s.admin_bind,
            )
            for i in range(s.workers)
        )
    # Checked apart: two probes with SO_REUSEADDR may share a port nobody listens on yet.
    if len({handle, http, *admin}) != 2 + len(admin):
        raise SupervisorError(
            f"handle_port ({handle}), http_port ({http}) and the admin ports "
            f"({', '.join(map(str, admin))}: admin_port + worker index) must all differ"
        )
    return Ports(handle, http, admin)


def _handle_port(
    s: Settings, family: int, probe: Callable[[socket.SocketKind, int, str], int]
) -> int:
    if s.handle_port:
        probe(socket.SOCK_DGRAM, s.handle_port, "native UDP")
        return probe(socket.SOCK_STREAM, s.handle_port, "native TCP")
    # One number free for both UDP and TCP (as NativeServer does for one process).
    for _ in range(_PORT_ATTEMPTS):
        with (
            socket.socket(family, socket.SOCK_DGRAM) as udp,
            socket.socket(family, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind((s.bind, 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind((s.bind, port))
            except OSError:
                continue
        probe(socket.SOCK_DGRAM, port, "native UDP")  # held until every port is chosen
        return probe(socket.SOCK_STREAM, port, "native TCP")
    raise SupervisorError(
        f"no port free for both UDP and TCP on {s.bind} after {_PORT_ATTEMPTS} tries"
    )


async def prepare(settings: Settings, db: Database, now: datetime) -> None:
    """What workers would otherwise race for: the site key, the signing keys, the secrets
    key, demo data."""
    await asyncio.to_thread(load_or_create_site_key, settings.site_key_path)
    vault = await asyncio.to_thread(open_vault, settings)
    signer = None
    if settings.sign_records:
        signer = await asyncio.to_thread(build_signer, settings, int(now.timestamp()))
    if settings.demo:
        writes = WriteService(
            db.registry, vault=vault, signer=signer, templates=registry_catalog(db.registry)
        )
        counts = await seed_demo(
            db.registry,
            now,
            writes=writes,
            only_under=settings.prefixes,
            top_level=settings.role == "top-level",
        )
        log.info("demo data: %s", counts)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _backoff(n: int) -> float:
    return float(min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (n - 1)))


@dataclass(eq=False)
class _Child:
    proc: asyncio.subprocess.Process
    started: float  # loop time


@dataclass(eq=False)
class _Slot:
    index: int
    settings: Settings
    child: _Child | None = None
    up: asyncio.Event = field(default_factory=asyncio.Event)  # started once
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one start at a time


class Supervisor:
    """Keeps ``settings.workers`` workers serving until ``stop``; see the module docstring."""

    def __init__(self, settings: Settings, stop: asyncio.Event):
        self.settings = settings
        self.stop = stop
        self.slots: list[_Slot] = []  # filled by run()
        self._children: set[_Child] = set()  # every live worker, including ones starting
        self._failure: SupervisorError | None = None
        self._reload: asyncio.Task[None] | None = None
        self._reload_again = False

    async def run(self, settings: Settings, ports: Ports, database: str) -> None:
        """Start the workers with ``settings`` (the database and ports fixed), announce
        the node ready once all are, keep them until ``stop``, then stop them."""
        loop = asyncio.get_running_loop()
        base = replace(settings, demo=False, handle_port=ports.handle, http_port=ports.http)
        self.slots = [
            _Slot(i, replace(base, admin_port=port)) for i, port in enumerate(ports.admin)
        ]
        keepers = [loop.create_task(self._keep(slot)) for slot in self.slots]
        for task in keepers:
            task.add_done_callback(self._keeper_done)
        all_up = loop.create_task(self._all_up())
        stopped = loop.create_task(self.stop.wait())
        try:
            await asyncio.wait([all_up, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not self.stop.is_set():
                s = self.settings
                log.info(
                    "idnode %s ready: role=%s admin=%s:%d handle=%d http=%d database=%s workers=%d",
                    __version__,
                    s.role,
                    s.admin_bind,
                    ports.admin[0],
                    ports.handle,
                    ports.http,
                    database,
                    len(self.slots),
                )
            await stopped
            log.info("shutting down %d workers", len(self.slots))
        finally:
            tasks: list[asyncio.Future[Any]] = [
                *keepers,
                all_up,
                stopped,
                *([self._reload] if self._reload else []),
            ]
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(self._terminate(c) for c in list(self._children)))
        if self._failure is not None:
            raise self._failure

    async def _all_up(self) -> None:
        for slot in self.slots:
            await slot.up.wait()

    def _give_up(self, error: SupervisorError) -> None:
        if self._failure is None:
            self._failure = error
        self.stop.set()

    def _keeper_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("supervising a worker failed", exc_info=exc)
            self._give_up(SupervisorError(f"supervising a worker failed: {exc!r}"))

    # -- one worker ----------------------------------------------------------------

    async def _keep(self, slot: _Slot) -> None:
        """Keep slot's worker serving: start it, restart it when it dies."""
        loop = asyncio.get_running_loop()
        failed_starts = quick_deaths = 0
        while True:
            try:
                child = await self._ensure_started(slot)
            except _StartFailed as exc:
                failed_starts += 1
                if failed_starts >= _MAX_FAILED_STARTS:
                    self._give_up(
                        SupervisorError(
                            f"worker {slot.index} failed to start {failed_starts} times in a row, giving up: {exc}"
                        )
                    )
                    return
                delay = _backoff(failed_starts)
                log.warning(
                    "worker %d did not start (%s); trying again in %.1f s", slot.index, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            failed_starts = 0
            slot.up.set()
            code = await child.proc.wait()
            self._children.discard(child)
            if child is not slot.child:
                continue  # replaced by a rolling restart; its successor serves
            ran = loop.time() - child.started
            if ran >= _STABLE_S:
                quick_deaths, delay = 0, 0.0
            else:  # dying again and again soon after start: do not spin
                quick_deaths += 1
                delay = _backoff(quick_deaths)
            log.warning(
                "worker %d (pid %d) %s after %.1f s; restarting it in %.1f s",
                slot.index,
                child.proc.pid,
                _exit_text(code),
                ran,
                delay,
            )
            slot.child = None
            await asyncio.sleep(delay)

    async def _ensure_started(self, slot: _Slot) -> _Child:
        async with slot.lock:
            if slot.child is None:  # a rolling restart may have put one in meanwhile
                slot.child = await self._start(slot)
            return slot.child

    async def _start(self, slot: _Slot) -> _Child:
        """A new worker for ``slot``, once it reports ready; _StartFailed otherwise."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *WORKER_COMMAND,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise _StartFailed(f"cannot run {WORKER_COMMAND[0]}: {exc}") from None
        child = _Child(proc, asyncio.get_running_loop().time())
        self._children.add(child)
        assert proc.stdin is not None and proc.stdout is not None
        order = {"index": slot.index, "settings": worker_flags(slot.settings)}
        try:
            proc.stdin.write(orjson.dumps(order) + b"\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT_S)
        except ConnectionError:
            line = b""  # it died before reading its order; its exit says more
        except TimeoutError:
            await self._terminate(child)
            raise _StartFailed(f"not ready after {_START_TIMEOUT_S:.0f} s") from None
        try:
            report = orjson.loads(line) if line.strip() else {}
        except orjson.JSONDecodeError:
            report = {"error": f"unexpected report {line[:200]!r}"}
        if "ready" not in report:
            code = await proc.wait()
            self._children.discard(child)
            raise _StartFailed(report.get("error") or f"it {_exit_text(code)}")
        log.info(
            "worker %d up: pid %d, admin port %d", slot.index, proc.pid, report["ready"]["admin"]
        )
        return child

    async def _terminate(self, child: _Child) -> None:
        """SIGTERM, then SIGKILL if it outlives its shutdown timeout."""
        if child.proc.returncode is None:
            with suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(
                    child.proc.wait(), self.settings.shutdown_timeout_s + _EXIT_MARGIN_S
                )
            except TimeoutError:
                log.warning("worker pid %d did not stop in time; killing it", child.proc.pid)
                with suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        self._children.discard(child)

    # -- rolling restart -------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: replace every worker, one at a time."""
        if not self.slots:
            log.info("reload ignored: the workers have not started yet (they will read the keys)")
            return
        if self._reload is not None and not self._reload.done():
            self._reload_again = True  # keys may have changed after this pass began
            log.info("reload already in progress; another pass follows it")
            return
        self._reload = asyncio.get_running_loop().create_task(self._rolling_restart())

    async def _rolling_restart(self) -> None:
        await self._all_up()
        while True:
            self._reload_again = False
            log.info("reload: replacing %d workers one at a time", len(self.slots))
            for slot in self.slots:
                async with slot.lock:
                    old = slot.child
                    if old is None:
                        continue  # dead and being restarted: the new one reads the keys anyway
                    try:
                        new = slot.child = await self._start(slot)
                    except _StartFailed as exc:
                        log.error(
                            "reload stopped: the replacement of worker %d did not start (%s); "
                            "the running workers keep serving",
                            slot.index,
                            exc,
                        )
                        return
                await self._terminate(old)
                log.info("worker %d replaced: pid %d -> %d", slot.index, old.proc.pid, new.proc.pid)
            log.info("reload done")
            if not self._reload_again:
                return


async def supervise(settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
    """Run ``settings.workers`` workers until SIGINT or SIGTERM; SIGHUP restarts them."""
    server_ssl_context(settings)  # an unusable TLS file stops us here, not in every worker
    if settings.admin_port and settings.admin_port + settings.workers - 1 > 65535:
        raise SettingsError(
            f"admin_port ({settings.admin_port}) + workers ({settings.workers}) - 1 is not a port number"
        )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    supervisor = Supervisor(settings, stop)
    signals = {
        signal.SIGINT: stop.set,
        signal.SIGTERM: stop.set,
        signal.SIGHUP: supervisor.request_reload,
    }
    for sig, handler in signals.items():
        loop.add_signal_handler(sig, handler)  # from here on, a stop is orderly
    try:
        async with node_database(settings) as db:
            ports = claim_ports(settings)
            await prepare(settings, db, datetime.fromtimestamp(clock(), UTC))
            if not stop.is_set():
                database = f"embedded {settings.data_dir}" if settings.embedded else "external"
                # The workers use the embedded server through its socket: it stays ours.
                await supervisor.run(replace(settings, database_url=db.dsn), ports, database)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("idnode stopped")
