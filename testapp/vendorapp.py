#!/usr/bin/python3
"""A stand-in for a vendor trading component (feedhandler, ordergw, riskgw).

Installed as /opt/<component>/releases/<version>/bin/<component>; it learns its name,
version and misbehaviour from ../release.json next to it. Standard library only.

    <component> --config /etc/<component>/<component>.conf

Serves GET /health (JSON) and GET /version (text) on 0.0.0.0:[server] port, and logs
to [log] file (default /var/log/<component>/<component>.log).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELEASE_FILE = Path(__file__).resolve().parent.parent / "release.json"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class App:
    def __init__(self, release: dict, conf: configparser.ConfigParser) -> None:
        self.component = release["component"]
        self.version = release["version"]
        self.behaviour = release.get("behaviour", {"ok": True})
        self.required_schema = int(release.get("config_schema", 1))
        self.conf = conf
        self.port = conf.getint("server", "port")
        self.schema = conf.getint("app", "schema", fallback=1)
        self.log_path = Path(conf.get("log", "file", fallback=f"/var/log/{self.component}/{self.component}.log"))
        self.started_at = utc_now()

    @property
    def reported_version(self) -> str:
        return self.behaviour.get("wrong_version", self.version)

    def log(self, message: str) -> None:
        line = f"{utc_now()} {self.component} {self.version} {message}\n"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as fh:
            fh.write(line)
        sys.stderr.write(line)
        sys.stderr.flush()

    def health(self) -> tuple[int, dict]:
        # `[app] degraded_versions` is a site-config fault for tests: this host cannot run these releases.
        site_bad = {v.strip() for v in self.conf.get("app", "degraded_versions", fallback="").split(",")}
        status = "degraded" if self.behaviour.get("health_fail") or self.version in site_bad else "ok"
        body = {
            "component": self.component,
            "version": self.reported_version,
            "status": status,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "config_schema": self.schema,
        }
        return (503 if status != "ok" else 200), body


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"{app.component}/{app.version}"

        def do_GET(self) -> None:
            if self.path == "/health":
                code, body = app.health()
                self.reply(code, "application/json", json.dumps(body, sort_keys=True) + "\n")
            elif self.path == "/version":
                self.reply(200, "text/plain", app.reported_version + "\n")
            else:
                self.reply(404, "text/plain", "not found\n")

        def reply(self, code: int, content_type: str, text: str) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # requests are not logged
            pass

    return Handler


def check_schema(app: App) -> str | None:
    if app.schema < app.required_schema:
        return f"config schema {app.schema} is older than required {app.required_schema}: run bin/migrate-config first"
    if app.schema > app.required_schema:
        return f"config schema {app.schema} is newer than supported {app.required_schema}"
    return None


def serve(app: App) -> int:
    behaviour = app.behaviour
    app.log(f"starting pid={os.getpid()} config_schema={app.schema}")
    if behaviour.get("no_start"):
        app.log("error: licence check failed: cannot reach entitlement service")
        return 1
    problem = check_schema(app)
    if problem:
        app.log("error: " + problem)
        return 1
    stop = threading.Event()
    if behaviour.get("hang_on_stop"):
        signal.signal(signal.SIGTERM, lambda *_: app.log("SIGTERM ignored"))
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if behaviour.get("slow_start"):
        app.log(f"warming caches for {behaviour['slow_start']} s")
        if stop.wait(float(behaviour["slow_start"])):
            return 0
    server = ThreadingHTTPServer(("0.0.0.0", app.port), make_handler(app))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.log(f"ready port={app.port}")
    crash_after = behaviour.get("crash_after")
    if stop.wait(float(crash_after) if crash_after else None):
        app.log("stopping on SIGTERM")
        server.shutdown()
        return 0
    app.log(f"fatal: segmentation fault in order book after {crash_after} s")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="INI config file")
    args = parser.parse_args(argv)
    release = json.loads(RELEASE_FILE.read_text())
    conf = configparser.ConfigParser()
    if not conf.read(args.config):
        print(f"{release['component']}: cannot read config {args.config}", file=sys.stderr)
        return 1
    return serve(App(release, conf))


if __name__ == "__main__":
    sys.exit(main())
