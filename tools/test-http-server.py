#!/usr/bin/env python3
"""A small HTTP server for tests: serves a folder on 127.0.0.1, logs every
request, and misbehaves on demand.

    test-http-server.py --root DIR [--port N] [--port-file F] [--log F] [--rules F]

--port 0 (the default) picks a free port; the port is written to --port-file
once the server listens. Every request appends one line "METHOD PATH STATUS"
to --log, so a test can count the requests per path.

--rules names a JSON file read again on every request, mapping a URL path to
how to misbehave for it:

    {"/x.img": {"mode": "truncate", "bytes": 1000},  # full Content-Length, close after 1000 bytes
     "/y.img": {"mode": "stall", "bytes": 1000},     # send 1000 bytes, then nothing (held open)
     "/z.img": {"mode": "status", "status": 404},    # answer that HTTP status
     "/w.img": {"mode": "slow", "rate": 65536}}      # at most this many bytes per second

A rule with "times": N misbehaves on the first N requests of its path only;
"ranges": false makes the server ignore range requests on that path (always).
Positions in "bytes" count from the start of the file, also for a range
request ("Range: bytes=N-", answered 206), which the log shows as
"GET PATH 206 bytes=N-".
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vmctl-test-http"

    def log_message(self, fmt, *args):  # quiet on stderr; the log file is what counts
        pass

    def record(self, status, note=""):
        if not self.server.log_path:
            return
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(f"{self.command} {self.path} {status}{' ' + note if note else ''}\n")
            f.flush()

    def rule(self, path):
        if not self.server.rules_path:
            return None
        try:
            with open(self.server.rules_path) as f:
                rules = json.load(f)
        except (OSError, ValueError):
            return None
        rule = rules.get(path)
        if rule and "times" in rule:
            with self.server.log_lock:
                seen = self.server.rule_hits.get(path, 0)
                self.server.rule_hits[path] = seen + 1
            if seen >= int(rule["times"]):
                rule = {k: v for k, v in rule.items() if k != "mode"}
        return rule

    def fail(self, status):
        body = f"{status}\n".encode()
        # Logged before answering, so a client that got the answer finds it logged.
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = unquote(urlsplit(self.path).path)
        rule = self.rule(path) or {}
        mode = rule.get("mode")
        if mode == "status":
            self.fail(int(rule.get("status", 404)))
            return
        root = os.path.realpath(self.server.root)
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not (full == root or full.startswith(root + os.sep)) or not os.path.isfile(full):
            self.fail(404)
            return
        size = os.path.getsize(full)
        start = 0
        rng = self.headers.get("Range", "")
        if rule.get("ranges") is False:
            rng = ""  # a server that ignores range requests
        if rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit():
            start = int(rng[6:-1])
            if start >= size:
                self.fail(416)
                return
        self.record(206 if start else 200, rng if start else "")
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = int(rule.get("bytes", size)) if mode in ("truncate", "stall") else size
        rate = int(rule.get("rate", 0)) if mode == "slow" else 0
        sent = start
        try:
            with open(full, "rb") as f:
                f.seek(start)
                while sent < limit:
                    data = f.read(min(CHUNK, limit - sent))
                    if not data:
                        break
                    self.wfile.write(data)
                    self.wfile.flush()
                    sent += len(data)
                    if rate:
                        time.sleep(len(data) / rate)
            if mode == "stall":
                # Keep the connection open and silent until the client gives up.
                while not self.server.stopping.wait(0.2):
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        if mode in ("truncate", "stall"):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that hang up (tests cancelling, timing out) are expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="HTTP server for vmctl's image tests")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--rules")
    args = ap.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    server.root = args.root
    server.log_path = args.log
    server.rules_path = args.rules
    server.log_lock = threading.Lock()
    server.stopping = threading.Event()
    server.rule_hits = {}
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.rename(tmp, args.port_file)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
    return 0


def on_term(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    sys.exit(main())
