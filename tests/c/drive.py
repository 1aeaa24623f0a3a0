#!/usr/bin/env python3
"""Drives the C chat example (examples/c/chat.c) as a WebSocket client.

    python3 tests/c/drive.py [--slow] -- COMMAND [ARG...]

Starts COMMAND (which must print "listening on HOST:PORT" on stdout), then
checks, in order:

  1. two clients connect to /chat and each gets "Welcome to Rookery Chat!";
  2. a text from client 1 reaches both clients;
  3. a binary message from client 2 gets it closed with code 1003, and
     client 1 is unaffected;
  4. a raw client receives a ping within 7 s of connecting (the server's
     5 s ping interval);
  5. SIGTERM: client 1 is closed with 1001 and COMMAND exits with status 0.

--slow multiplies every timeout by 10 (for valgrind). Exits 0 on success,
1 with a message on the first failed check. Needs `websockets` (>= 12).
"""

import argparse
import contextlib
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WELCOME = "Welcome to Rookery Chat!"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"ok: {what}", flush=True)


def wait_listening(proc, timeout):
    """Reads stdout until "listening on HOST:PORT"; returns the port."""
    found = {}

    def reader():
        for line in proc.stdout:
            sys.stdout.write(f"[server stdout] {line}")
            if "listening on" in line and "port" not in found:
                found["port"] = int(line.strip().rsplit(":", 1)[1])
                ready.set()
        ready.set()

    ready = threading.Event()
    threading.Thread(target=reader, daemon=True).start()
    ready.wait(timeout)
    if "port" not in found:
        raise Failure(f"no 'listening on' line within {timeout} s")
    return found["port"]


def raw_connect(port, timeout):
    """A bare WebSocket client that does not answer pings for us."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /chat HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise Failure("raw client: connection closed during handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise Failure(f"raw client: handshake refused: {head!r}")
    return sock


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Failure("raw client: connection closed")
        data += chunk
    return data


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exact(sock, 8))
    return b0 & 0x0F, read_exact(sock, length)


def masked_close(code):
    mask = os.urandom(4)
    payload = struct.pack("!H", code)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + body


def run(cmd, slow):
    scale = 10 if slow else 1
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    try:
        with contextlib.ExitStack() as clients:
            drive(proc, scale, clients)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def drive(proc, scale, clients):
    """Runs the checks against the started server `proc`."""
    t = 5 * scale
    port = wait_listening(proc, 10 * scale)
    url = f"ws://127.0.0.1:{port}/chat"
    print(f"server on port {port}", flush=True)

    raw = raw_connect(port, t)
    raw_opened = time.monotonic()

    c1 = clients.enter_context(connect(url, open_timeout=t, close_timeout=t))
    check(c1.recv(timeout=t) == WELCOME, "client 1 gets the welcome")
    c2 = clients.enter_context(connect(url, open_timeout=t, close_timeout=t))
    check(c2.recv(timeout=t) == WELCOME, "client 2 gets the welcome")

    c1.send("hello from client 1")
    check(c1.recv(timeout=t) == "hello from client 1", "text reaches its sender")
    check(c2.recv(timeout=t) == "hello from client 1", "text reaches client 2")

    c2.send(b"\x00\x01\x02")
    try:
        extra = c2.recv(timeout=t)
        raise Failure(f"client 2 got {extra!r} instead of a close")
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        check(code == 1003, f"binary message closes with 1003 (got {code})")

    c1.send("still here")
    check(c1.recv(timeout=t) == "still here", "client 1 unaffected by the close")

    # The raw client saw the welcome and two broadcasts; now a ping.
    got_ping = False
    raw.settimeout(max(0.5, 7 * scale - (time.monotonic() - raw_opened)))
    try:
        while not got_ping:
            opcode, _payload = read_frame(raw)
            got_ping = opcode == 0x9
    except socket.timeout:
        pass
    check(got_ping, "the server pings (5 s interval)")
    raw.sendall(masked_close(1000))
    raw.close()

    proc.send_signal(signal.SIGTERM)
    try:
        c1.recv(timeout=t)
        raise Failure("client 1 got a message instead of a close")
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        check(code == 1001, f"SIGTERM closes client 1 with 1001 (got {code})")
    try:
        status = proc.wait(timeout=10 * scale)
    except subprocess.TimeoutExpired:
        raise Failure("server still running after SIGTERM")
    check(status == 0, f"server exits 0 after SIGTERM (got {status})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="10x timeouts")
    parser.add_argument("cmd", nargs="+", help="server command line")
    args = parser.parse_args()
    try:
        run(args.cmd, args.slow)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
