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
  5. clients that close their sockets while the server broadcasts to them
     (so that it writes to reset connections): COMMAND, which does not
     ignore SIGPIPE, is not killed by it (the library sends with
     MSG_NOSIGNAL), and the sender gets all its messages;
  6. SIGTERM: the sender is closed with 1001 and COMMAND exits with status 0.

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


def resetting_peers(proc, url, port, t, rounds):
    """Check 5: peers that go away mid-broadcast must not raise SIGPIPE.

    A write to a socket whose peer has reset it raises SIGPIPE unless the
    writer passes MSG_NOSIGNAL. Each round, eight members read their
    welcome, then close their sockets half way through a burst of 100 texts
    from a sender, so the server goes on broadcasting to sockets that have
    been (or are being) reset. Whether a given round makes the server write
    after a reset depends on timing: with the flag dropped (a preloaded
    sendmsg), 200 rounds killed the example in 4 runs out of 5, never with
    it. 200 rounds take about 3 s (20 under --slow).
    """
    burst = 100
    # max_queue=None: the sender reads the broadcasts as fast as they come.
    c1 = connect(url, open_timeout=t, close_timeout=t, max_queue=None)
    if c1.recv(timeout=t) != WELCOME:
        raise Failure("resetting peers: the sender got no welcome")
    for round_no in range(rounds):
        peers = [raw_connect(port, t) for _ in range(8)]
        for peer in peers:
            opcode, payload = read_frame(peer)
            if (opcode, payload) != (0x1, WELCOME.encode()):
                raise Failure(f"resetting peer: got {opcode:#x} {payload!r}, not the welcome")
        try:
            for i in range(burst):
                c1.send(f"burst {round_no}.{i}")
                if i == burst // 2:
                    for peer in peers:
                        peer.close()
            for i in range(burst):
                got = c1.recv(timeout=t)
                if got != f"burst {round_no}.{i}":
                    raise Failure(f"the sender got {got!r} in round {round_no}, not burst {i}")
        except ConnectionClosed as e:
            try:
                status = proc.wait(timeout=t)
            except subprocess.TimeoutExpired:
                raise Failure(f"resetting peers: the sender was closed in round {round_no}: {e}")
            how = "SIGPIPE" if status == -signal.SIGPIPE else f"status {status}"
            raise Failure(f"resetting peers: the server died ({how}) in round {round_no}")
    check(
        True,
        f"{rounds} rounds of 8 peers closing mid-broadcast: no SIGPIPE, "
        "the sender got every message",
    )
    return c1


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

    # Client 1 would get every burst below: it leaves, the sender stays.
    c1.close()
    c1 = clients.enter_context(resetting_peers(proc, url, port, t, 200 if scale == 1 else 20))

    proc.send_signal(signal.SIGTERM)
    try:
        c1.recv(timeout=t)
        raise Failure("the remaining client got a message instead of a close")
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        check(code == 1001, f"SIGTERM closes the remaining client with 1001 (got {code})")
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
