#!/usr/bin/env python3
"""A flooding Redis against one rookery node (docs/security.md, "Redis").

Starts a fake Redis on a free loopback port: it answers PSUBSCRIBE, then
sends pmessages of 1000 bytes for room `flood` (from another node id) as
fast as the node takes them, for DURATION seconds. Starts rookery with
`--redis` to it and `--metrics`, joins room `calm` with a WebSocket client
of its own (stdlib only) and, while the flood runs, says a short line there
and waits for its echo, again and again. Prints the node's RSS (before,
peak, after), the local round trips (count, median, 99th percentile,
slowest, and how many got no answer within 5 s) and the flood bytes the
node took.

    python3 bench/redis_flood.py path/to/rookery [DURATION]

Nothing but python3. The node is killed at the end, and after 1 GiB of RSS
(so that a build without the read bound cannot take the machine down).
"""

import base64
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

RSS_CAP_KIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def fake_redis(listener, stop, fed):
    """Serves each connection: the subscribed one is flooded."""

    def serve(conn):
        conn.settimeout(0.5)
        try:
            first = conn.recv(512)
        except OSError:
            first = b""
        if b"PSUBSCRIBE" not in first:
            while not stop.is_set():  # the publishing connection: hold it
                time.sleep(0.1)
            conn.close()
            return
        conn.sendall(b"*3\r\n" + bulk(b"psubscribe") + bulk(b"rookery:room:*") + b":1\r\n")
        env = bytes([1, 0]) + struct.pack(">Q", 0xF100D) + bytes([5]) + b"flood" + b"f" * 1000
        msg = b"*4\r\n" + bulk(b"pmessage") + bulk(b"rookery:room:*") + bulk(b"rookery:room:flood") + bulk(env)
        burst = msg * 64
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                conn.sendall(burst)
                fed[0] += len(burst)
            except socket.timeout:
                continue
            except OSError:
                break
        conn.close()

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def rss_kib(pid, field="VmRSS:"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ws_connect(addr, path):
    s = socket.create_connection(addr)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def ws_send(s, text):
    data = text.encode()
    mask = os.urandom(4)
    assert len(data) < 126
    s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise RuntimeError("closed")
        out += chunk
    return out


def ws_text(s):
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", recv_exact(s, 8))[0]
        payload = recv_exact(s, n)
        if b0 & 0x0F == 1:
            return payload.decode()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", free_port()))
    listener.listen(8)
    stop, fed = threading.Event(), [0]
    port = listener.getsockname()[1]
    node = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--ping-interval", "0", "--metrics", "-q",
         "--redis", f"redis://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = node.stdout.readline().strip()
        host, p = line.removeprefix("listening on ").rsplit(":", 1)
        addr = (host, int(p))
        calm = ws_connect(addr, "/chat/calm")
        ws_text(calm)  # the welcome
        calm.settimeout(5)
        before = rss_kib(node.pid)
        threading.Thread(target=fake_redis, args=(listener, stop, fed), daemon=True).start()
        trips, unanswered, capped = [], 0, False
        end = time.monotonic() + duration
        i = 0
        while time.monotonic() < end:
            if rss_kib(node.pid) > RSS_CAP_KIB:
                capped = True
                break
            sent = time.monotonic()
            ws_send(calm, f"c:{i}")
            try:
                while ws_text(calm) != f"c:{i}":
                    pass
                trips.append(time.monotonic() - sent)
            except (socket.timeout, TimeoutError):
                unanswered += 1
            i += 1
            time.sleep(0.01)
        peak = rss_kib(node.pid, "VmHWM:")
        stop.set()
        time.sleep(1.0)
        after = rss_kib(node.pid)
    finally:
        stop.set()
        node.kill()
        node.wait()
    ms = sorted(t * 1000 for t in trips)
    print(f"binary {binary}, flood {duration:.0f} s{' (stopped at the 1 GiB RSS cap)' if capped else ''}")
    print(f"RSS: {before} KiB before, peak {peak} KiB, {after} KiB 1 s after the flood stopped")
    if ms:
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(
            f"local round trips: {len(ms)} answered, median {statistics.median(ms):.2f} ms, "
            f"p99 {p99:.2f} ms, slowest {ms[-1]:.2f} ms; {unanswered} unanswered within 5 s"
        )
    else:
        print(f"local round trips: none answered; {unanswered} unanswered within 5 s")
    print(f"flood bytes taken by the node: {fed[0]}")


if __name__ == "__main__":
    main()
