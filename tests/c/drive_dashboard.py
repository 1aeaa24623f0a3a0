#!/usr/bin/env python3
"""Drives the C sensor dashboard (examples/c/dashboard.c).

    python3 tests/c/drive_dashboard.py [--slow] -- COMMAND [ARG...]

COMMAND must serve the dashboard with the token "s3cret" (e.g.
`examples/c/dashboard 127.0.0.1:0 s3cret`) and print "listening on
HOST:PORT". Checks, in order:

  1. GET /status is 200 with Content-Type application/json and a JSON body
     {"clients":0,"readings":N,"uptime_s":N}; GET /other is 404;
  2. upgrades to /sensors without a token, or with a wrong one, are refused
     with 403 (on_upgrade);
  3. two clients with ?token=s3cret each receive readings posted by the
     worker thread (rk_post to every connection): JSON, seq strictly
     increasing, the same readings to both, about one per 100 ms;
  4. /status then says "clients":2 and more readings;
  5. SIGTERM: both clients are closed with 1001, COMMAND prints "stopped"
     and exits with status 0.

--slow multiplies every timeout by 10 (for valgrind). Exits 0 on success,
1 with a message on the first failed check. Needs `websockets` (>= 12).
"""

import argparse
import warnings
import json
import signal
import socket
import subprocess
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

TOKEN = "s3cret"

# Newer websockets warns about connect() outside a with block; the clients
# here are closed by the server on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"ok: {what}", flush=True)


def start_reader(proc, timeout):
    """Echoes stdout; returns (port, lines), once "listening on" is seen."""
    lines = []
    ready = threading.Event()
    found = {}

    def reader():
        for line in proc.stdout:
            sys.stdout.write(f"[server stdout] {line}")
            lines.append(line.strip())
            if "listening on" in line and "port" not in found:
                found["port"] = int(line.strip().rsplit(":", 1)[1])
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    ready.wait(timeout)
    if "port" not in found:
        raise Failure(f"no 'listening on' line within {timeout} s")
    return found["port"], lines


def http_get(port, target, timeout):
    """One request; returns (status, headers dict in lower case, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def status_json(port, timeout):
    status, headers, body = http_get(port, "/status", timeout)
    check(status == 200, f"GET /status is 200 (got {status})")
    check(
        headers.get("content-type") == "application/json",
        f"/status has Content-Type application/json ({headers.get('content-type')})",
    )
    return json.loads(body)


def refused(url, timeout):
    try:
        ws = connect(url, open_timeout=timeout)
    except InvalidStatus as e:
        return e.response.status_code
    ws.close()
    return None


def run(cmd, slow):
    scale = 10 if slow else 1
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port, lines = start_reader(proc, 10 * scale)
        drive(proc, port, lines, scale)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def drive(proc, port, lines, scale):
    t = 5 * scale
    base = f"ws://127.0.0.1:{port}/sensors"

    # 1. HTTP answers from on_http.
    st = status_json(port, t)
    check(
        set(st) == {"clients", "readings", "uptime_s"} and st["clients"] == 0,
        f"/status is the expected JSON with no clients: {st}",
    )
    status, _, _ = http_get(port, "/other", t)
    check(status == 404, f"GET /other is 404 (got {status})")

    # 2. The upgrade filter.
    check(refused(base, t) == 403, "an upgrade without a token is refused with 403")
    check(
        refused(f"{base}?token=wrong", t) == 403,
        "an upgrade with a wrong token is refused with 403",
    )

    # 3. Readings posted by the worker thread reach every client.
    a = connect(f"{base}?token={TOKEN}", open_timeout=t)
    b = connect(f"{base}?x=1&token={TOKEN}", open_timeout=t)
    count = 15
    got = {"a": [], "b": []}
    started = time.monotonic()

    def read(name, ws):
        while len(got[name]) < count + 5:
            got[name].append(json.loads(ws.recv(timeout=t)))

    ta = threading.Thread(target=read, args=("a", a))
    tb = threading.Thread(target=read, args=("b", b))
    ta.start()
    tb.start()
    ta.join(10 * t)
    tb.join(10 * t)
    elapsed = time.monotonic() - started
    for name in ("a", "b"):
        seqs = [r["seq"] for r in got[name]]
        check(len(seqs) >= count, f"client {name} got {len(seqs)} readings")
        check(
            all(x < y for x, y in zip(seqs, seqs[1:])),
            f"client {name}: seq strictly increasing ({seqs[0]}..{seqs[-1]})",
        )
        check(
            all(isinstance(r["temp_c"], (int, float)) for r in got[name]),
            f"client {name}: every reading has a temperature",
        )
    common = set(r["seq"] for r in got["a"]) & set(r["seq"] for r in got["b"])
    check(len(common) >= count - 2, f"both clients got the same readings ({len(common)} in common)")
    per = elapsed / len(got["a"])
    if scale == 1:
        check(0.05 <= per <= 0.3, f"about one reading per 100 ms ({per * 1000:.0f} ms)")
    else:
        print(f"note: {per * 1000:.0f} ms per reading (under --slow, not checked)")

    # 4. /status counts them.
    st2 = status_json(port, t)
    check(st2["clients"] == 2, f"/status counts 2 clients: {st2}")
    check(st2["readings"] > st["readings"], "/status counts more readings")

    # 5. SIGTERM closes both with 1001 and exits 0.
    proc.send_signal(signal.SIGTERM)
    for name, ws in (("a", a), ("b", b)):
        try:
            while True:
                ws.recv(timeout=t)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            check(code == 1001, f"SIGTERM closes client {name} with 1001 (got {code})")
    try:
        rc = proc.wait(timeout=10 * scale)
    except subprocess.TimeoutExpired:
        raise Failure("the dashboard did not exit after SIGTERM")
    time.sleep(0.1)
    check(rc == 0, f"the dashboard exited with status 0 (got {rc})")
    check("stopped" in lines, "it printed 'stopped'")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", action="store_true", help="10x timeouts")
    parser.add_argument("cmd", nargs="+")
    args = parser.parse_args()
    try:
        run(args.cmd, args.slow)
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print("dashboard: all checks passed")


if __name__ == "__main__":
    main()
