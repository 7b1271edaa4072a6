"""A real webhook receiver for the benchmarks: nginx (Debian's ``nginx-light``) answering
every POST to ``/hooks/<name>`` with 204, a C server that costs the machine next to nothing.

It runs in the foreground (``daemon off``) on a free loopback port, with a configuration,
logs and temporary directories of its own in a directory the caller gives, and stops with
the context. Its access log has one line per request: the arrival time, the status, the
the number of the request on its connection, the path and the ``webhook-id`` header (the
event's id, SPEC §6); ``arrivals`` reads it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import free_port
from tests.support.waits import eventually_blocking

CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    log_format hooks '$msec $status $connection_requests $uri $http_webhook_id';
    server {{
        listen 127.0.0.1:{port};
        location /hooks/ {{
            access_log {dir}/hooks.log hooks;
            return 204;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


@dataclass
class Arrivals:
    """What reached one ``/hooks/<name>``: the first arrival (epoch seconds) of each
    ``webhook-id`` answered 204, and how many requests repeated an id already seen."""

    first: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    # Requests that came on a new connection (nginx's $connection_requests is 1).
    connections: int = 0


@dataclass
class NginxReceiver:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    _offset: int = 0
    _seen: dict[str, Arrivals] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def arrivals(self, name: str) -> Arrivals:
        """The webhooks that reached ``url(name)`` so far (the log is read from where the
        last call stopped)."""
        with self.log.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk.rfind(b"\n") + 1
        self._offset += complete
        for line in chunk[:complete].decode().splitlines():
            at, status, requests, path, webhook_id = line.split(" ", 4)
            self.statuses[status] += 1
            if status != "204":
                continue
            seen = self._seen.setdefault(path.removeprefix("/hooks/"), Arrivals())
            seen.connections += requests == "1"
            if webhook_id in seen.first:
                seen.duplicates += 1
            else:
                seen.first[webhook_id] = float(at)
        return self._seen.get(name, Arrivals())


@contextlib.contextmanager
def nginx_receiver(directory: Path) -> Iterator[NginxReceiver]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed: apt-get install -y nginx-light")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(CONFIG.format(dir=directory, port=port))
    log = directory / "hooks.log"
    log.touch()
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
    )
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(directory / 'error.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 404
            return False

        eventually_blocking(up, what="nginx to answer", within=10, interval=0.05)
        yield NginxReceiver(process, port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
