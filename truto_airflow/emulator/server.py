"""Run the emulator on a free loopback port and talk to it: :func:`run_emulator`.

Two modes share one code path: the app always runs under uvicorn on a real socket, and
inspection/configuration always goes through the bearer-protected ``/_emulator/...`` admin
routes. ``subprocess=False`` (default) runs uvicorn in a daemon thread, which is cheap and fine
for tests; ``subprocess=True`` runs ``python -m truto_airflow.emulator serve`` in a child process,
so a benchmark's client and the server do not share one GIL.

Startup is a bounded poll (``server.started`` / the child's ready line, then the health route), so
a broken server fails fast with a clear error instead of a test timing out somewhere later.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import queue
import socket
import subprocess as _subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx2

from truto_airflow.emulator.config import EmulatorConfig

__all__ = [
    "READY_PREFIX",
    "EmulatorHandle",
    "RecordedRequest",
    "bind_socket",
    "is_loopback",
    "run_emulator",
    "uvicorn_config",
]

READY_PREFIX = "TRUTO_EMULATOR_READY "
STARTUP_TIMEOUT_S = 20.0


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind (port 0 = any free port) before starting uvicorn, so the port is known up front."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_config(app: Any) -> Any:
    """Fast settings: httptools + uvloop when importable, no access log, warnings only."""
    import uvicorn

    return uvicorn.Config(
        app,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=2,
    )


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it (never includes the Authorization header)."""

    seq: int
    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any
    status: int  # 0 when the connection was deliberately dropped
    account_id: str | None
    opportunity_id: str | None
    applied: bool
    replay: bool
    fault: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedRequest:
        values: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**values)


class EmulatorHandle:
    """What ``with run_emulator() as emu`` yields: URLs, ids, inspection and runtime knobs."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self._admin = httpx2.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )
        self.accounts: dict[str, str] = {}

    def close(self) -> None:
        self._admin.close()

    def _call(self, method: str, action: str, **kwargs: Any) -> Any:
        response = self._admin.request(method, f"/_emulator/{action}", **kwargs)
        if response.status_code != 200:
            raise RuntimeError(f"emulator admin {action}: {response.status_code} {response.text}")
        return response.json()

    def wait_ready(self, deadline: float) -> None:
        """Poll the health route until it answers or ``deadline`` (monotonic) passes."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._call("GET", "health")
            except (httpx2.TransportError, RuntimeError) as exc:
                last = exc
                time.sleep(0.02)
                continue
            self.accounts = dict(self._call("GET", "info")["accounts"])
            return
        raise RuntimeError(f"emulator at {self.base_url} did not become ready: {last}")

    def account_id(self, account: str | None = None) -> str:
        """Resolve a seed key (``"hubspot"``, ``"sandbox"``) or pass a UUID through."""
        key = account or "hubspot"
        return self.accounts.get(key, key)

    @property
    def config(self) -> EmulatorConfig:
        return EmulatorConfig.from_json(self._call("GET", "info")["config"])

    def opportunity(self, account_id: str, opp_id: str) -> dict[str, Any] | None:
        """What the CRM holds for one opportunity (``None`` if it does not exist), in unified
        field names: every applied field, also those the CRM's reads do not return."""
        params = {"account_id": self.account_id(account_id), "id": opp_id}
        result: dict[str, Any] | None = self._call("GET", "opportunity", params=params)
        return result

    def opportunity_ids(self, account_id: str) -> list[str]:
        return list(
            self._call("GET", "opportunity-ids", params={"account_id": self.account_id(account_id)})
        )

    def apply_count(self, account_id: str, opp_id: str) -> int:
        """How many writes were applied to this opportunity since the last reset."""
        params = {"account_id": self.account_id(account_id), "id": opp_id}
        return int(self._call("GET", "apply-count", params=params))

    def requests(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        account_id: str | None = None,
        opportunity_id: str | None = None,
        since: int = 0,
    ) -> list[RecordedRequest]:
        """Logged API requests (admin routes excluded), oldest first, optionally filtered."""
        params: dict[str, str] = {"since": str(since)}
        if method:
            params["method"] = method.upper()
        if path:
            params["path"] = path
        if account_id:
            params["account_id"] = self.account_id(account_id)
        if opportunity_id:
            params["opportunity_id"] = opportunity_id
        return [RecordedRequest.from_json(e) for e in self._call("GET", "requests", params=params)]

    def configure(self, **knobs: Any) -> EmulatorConfig:
        """Change latency/fault/rate-limit knobs at runtime (see ``EmulatorConfig``)."""
        if "fault_statuses" in knobs:
            knobs["fault_statuses"] = list(knobs["fault_statuses"])
        return EmulatorConfig.from_json(self._call("POST", "configure", json=knobs))

    def reset(self) -> None:
        """Restore seed data and startup knobs; clear the log, idempotency cache and limits."""
        self._call("POST", "reset")

    def airflow_conn_json(self, account: str | None = None) -> str:
        """A JSON value for ``AIRFLOW_CONN_TRUTO_DEFAULT`` (conn_type ``truto``)."""
        return json.dumps(
            {
                "conn_type": "truto",
                "host": self.base_url,
                "password": self.token,
                "extra": {"integrated_account_id": self.account_id(account)},
            }
        )

    def airflow_conn_uri(self, account: str | None = None) -> str:
        """The same connection as a URI: ``http://127.0.0.1`` percent-encoded into the host
        (a URI has no other place for the scheme), the port in the port field."""
        query = urlencode({"integrated_account_id": self.account_id(account)})
        url = urlsplit(self.base_url)
        origin = quote(f"{url.scheme}://{url.hostname}", safe="")
        return f"truto://:{quote(self.token, safe='')}@{origin}:{url.port}/?{query}"


def _serve_in_thread(config: EmulatorConfig, host: str) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from truto_airflow.emulator.app import create_app

    sock = bind_socket(host, 0)
    server = uvicorn.Server(uvicorn_config(create_app(config)))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="truto-emulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("truto emulator thread failed to start")
        time.sleep(0.005)
    return server, thread, base_url_for(sock)


def _read_ready_line(proc: _subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    """Wait for the child's ready line; a reader thread keeps draining stdout afterwards."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="truto-emulator-stdout", daemon=True).start()
    seen = ""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"truto emulator process exited ({proc.wait()}); output: {seen!r}")
        seen += line
        if line.startswith(READY_PREFIX):
            data: dict[str, Any] = json.loads(line[len(READY_PREFIX) :])
            return data
    raise RuntimeError(f"truto emulator process did not report ready; output: {seen!r}")


@contextlib.contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    subprocess: bool = False,
    host: str = "127.0.0.1",
) -> Iterator[EmulatorHandle]:
    """Start the emulator on a free loopback port; stop it on exit.

    >>> with run_emulator(EmulatorConfig(seed=7)) as emu:  # doctest: +SKIP
    ...     emu.opportunity("hubspot", "opp-hubspot-0001")["name"]
    """
    config = config or EmulatorConfig()
    if not is_loopback(host):
        raise ValueError(f"run_emulator only binds loopback addresses, not {host!r}")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    if not subprocess:
        server, thread, base_url = _serve_in_thread(config, host)
        handle = EmulatorHandle(base_url, config.token)
        try:
            handle.wait_ready(deadline)
            yield handle
        finally:
            handle.close()
            server.should_exit = True
            thread.join(timeout=10)
        return
    command = [
        sys.executable,
        "-m",
        "truto_airflow.emulator",
        "serve",
        "--host",
        host,
        "--port",
        "0",
        "--config-json",
        json.dumps(config.to_json()),
        "--ready-line",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The command is this interpreter running our own module with our own arguments.
    proc = _subprocess.Popen(command, stdout=_subprocess.PIPE, text=True, env=env)  # noqa: S603
    try:
        info = _read_ready_line(proc, deadline)
        handle = EmulatorHandle(info["base_url"], config.token)
        try:
            handle.wait_ready(deadline)
            yield handle
        finally:
            handle.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except _subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
