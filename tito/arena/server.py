"""`tito competition serve`: the live leaderboard on localhost (standard library http.server).

Routes:
    /                           the page (tables, plot, submissions, awards) with a live script
    /api/leaderboard?since=G    JSON payload; with `since`, waits (long poll, up to
                                `long_poll_seconds`) until the database generation differs from G
    /pareto.png                 the Pareto plot, rendered from the current database
    /results/<id>.json          Gradescope results of one evaluation

Read-only: evaluations and awards happen elsewhere (the CLI, another process), and the page
updates because every write transaction bumps the generation counter it polls.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .html import pareto_png, payload, render_page
from .service import Arena


class LeaderboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, arena: Arena, address, final: bool = False, long_poll_seconds: float = 25,
                 poll_interval: float = 0.2, quiet: bool = True):
        super().__init__(address, _Handler)
        self.arena = arena
        self.final = final
        self.long_poll_seconds = long_poll_seconds
        self.poll_interval = poll_interval
        self.quiet = quiet
        self.waiting = 0  # long polls in progress (tests wait for the page to start one)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: LeaderboardServer

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_GET(self):  # noqa: N802
        srv = self.server
        url = urlparse(self.path)
        try:
            if url.path in ("/", "/index.html"):
                page = render_page(srv.arena, final=srv.final, live=True)
                self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
            elif url.path == "/api/leaderboard":
                since = parse_qs(url.query).get("since", [None])[0]
                if since is not None and since.lstrip("-").isdigit():
                    self._wait_for_change(int(since))
                body = json.dumps(payload(srv.arena, final=srv.final)).encode("utf-8")
                self._send(200, body, "application/json")
            elif url.path == "/pareto.png":
                self._send(200, pareto_png(srv.arena, final=srv.final), "image/png")
            elif m := re.fullmatch(r"/results/(\d+)\.json", url.path):
                path = srv.arena.root / "results" / f"{m.group(1)}.json"
                if path.is_file():
                    self._send(200, path.read_bytes(), "application/json")
                else:
                    self._send(404, b"no such evaluation\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _wait_for_change(self, since: int) -> None:
        srv = self.server
        deadline = time.monotonic() + srv.long_poll_seconds
        with srv.lock:
            srv.waiting += 1
        try:
            while time.monotonic() < deadline and srv.arena.store.generation() == since:
                time.sleep(srv.poll_interval)
        finally:
            with srv.lock:
                srv.waiting -= 1


def make_server(root: str | Path, host: str = "127.0.0.1", port: int = 0, final: bool = False,
                **kw) -> LeaderboardServer:
    """A server for the arena at `root` (not started: call serve_forever, or use serve())."""
    return LeaderboardServer(Arena(root), (host, port), final=final, **kw)


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8020, final: bool = False,
          say=print) -> None:
    server = make_server(root, host, port, final=final, quiet=False)
    say(f"serving the {'final' if final else 'public'} leaderboard of {root} at {server.url} "
        "(Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("stopped")
    finally:
        server.server_close()
