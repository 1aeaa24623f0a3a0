#!/usr/bin/env python3
"""History and rooms against the limits (docs/security.md, "History and
rooms"): four scenarios run against a `rookery` binary, with nothing but
Python's standard library (a raw WebSocket client).

  silent   --max-message 64KiB --max-backlog 256KiB --history 500: a member
           fills room h with 500 x 16,000 B and leaves; 62 sockets with 4 KiB
           receive buffers send the upgrade for /chat/h and never read.
           Reports RSS before and after, and rookery_backlog_bytes.
  deflate  --deflate --history 20: 20 x 1,048,000 B of text in room z; 8
           newcomers that offer permessage-deflate join one after the other
           and read their history. Reports the server's CPU time per join
           (utime + stime from /proc) and rookery_compressed_bytes_total
           where the binary has it.
  stall    the same room z; a member of another room sends a message just
           after 8 such newcomers sent their upgrades at once: how long its
           echo takes.
  lockout  --history 5 --max-rooms 1024: 1,024 connect-send-close cycles
           to /chat/jN, then an upgrade on /chat: its status.
  reader   --history 8 (default limits): 8 x 1,048,000 B in room big; a
           newcomer reads as fast as it can: how many history messages it
           got, and the close code if it was closed.

Usage: bench/history_limits.py BINARY [SCENARIO...]
Build the binary with `cargo build --release --features deflate`.
"""

import base64
import os
import random
import socket
import struct
import subprocess
import sys
import time

OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def start(binary, *args):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--ping-interval", "0", "--metrics", "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().strip()
    host, port = line.removeprefix("listening on ").rsplit(":", 1)
    return proc, (host, int(port))


def rss_kib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(proc):
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def metric(addr, name):
    s = socket.create_connection(addr)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


def upgrade(addr, path, extra="", rcvbuf=None, read_head=True):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    if not read_head:
        return s, None
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)
        if not byte:
            break
        head += byte
    status = int(head.split(b" ", 2)[1]) if head else 0
    return s, status


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def read_frame(s):
    """(first byte, payload) of the next server frame."""
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    return b0, recv_exact(s, n)


def send_text(s, text):
    payload = text.encode()
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        head = struct.pack(">BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x81, 0xFE, n)
    else:
        head = struct.pack(">BBQ", 0x81, 0xFF, n)
    # Masking as one big integer XOR: C speed in pure Python.
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    s.sendall(head + mask + masked)


def fill(addr, path, messages):
    s, status = upgrade(addr, path)
    assert status == 101, status
    read_frame(s)  # the welcome
    for m in messages:
        send_text(s, m)
        first, payload = read_frame(s)
        assert len(payload) == len(m.encode()), (len(payload), len(m))
    s.close()
    time.sleep(0.1)


def words(n, seed):
    """`n` bytes of text from a small vocabulary: compressible, not trivially."""
    rng = random.Random(seed)
    vocab = ["rook", "nest", "tree", "wing", "caw", "flock", "twig", "sky", "field", "crow",
             "board", "socket", "frame", "queue", "history", "room", "seed", "rain"]
    out, size = [], 0
    while size < n:
        w = rng.choice(vocab) + (" " if rng.random() < 0.9 else "\n")
        out.append(w)
        size += len(w)
    return "".join(out)[:n]


def silent(binary):
    proc, addr = start(binary, "--max-message", "64KiB", "--max-backlog", "256KiB",
                       "--history", "500")
    try:
        fill(addr, "/chat/h", (f"{i:06}:" + "h" * 15993 for i in range(500)))
        before = rss_kib(proc)
        socks = [upgrade(addr, "/chat/h", rcvbuf=4096, read_head=False)[0] for _ in range(62)]
        time.sleep(2)
        after = rss_kib(proc)
        backlog = metric(addr, "rookery_backlog_bytes")
        closes = metric(addr, "rookery_slow_consumer_closes_total")
        print(f"silent: RSS {before / 1024:.1f} MB -> {after / 1024:.1f} MB, "
              f"rookery_backlog_bytes {backlog:,} ({backlog / 62 / 1024:.0f} KiB per newcomer, "
              f"cap 256 KiB + one message), slow-consumer closes {closes}")
        for s in socks:
            s.close()
    finally:
        proc.kill()
        proc.wait()


def deflate(binary):
    proc, addr = start(binary, "--deflate", "--history", "20")
    try:
        kept0 = cpu_seconds(proc)
        fill(addr, "/chat/z", (words(1_048_000, i) for i in range(20)))
        kept = cpu_seconds(proc) - kept0
        compressed0 = metric(addr, "rookery_compressed_bytes_total")
        joins = 8
        costs = []
        t0 = time.monotonic()
        for _ in range(joins):
            cpu0 = cpu_seconds(proc)
            s, status = upgrade(addr, "/chat/z", OFFER)
            assert status == 101
            read_frame(s)
            for _ in range(20):
                first, _ = read_frame(s)
                assert first & 0x40, "not compressed"
            s.close()
            time.sleep(0.05)
            costs.append(cpu_seconds(proc) - cpu0)
        wall = time.monotonic() - t0
        compressed = metric(addr, "rookery_compressed_bytes_total")
        extra = ""
        if compressed is not None:
            extra = (f", bytes compressed while filling {compressed0:,} "
                     f"(history 20,960,000), while joining {compressed - compressed0:,}")
        later = sum(costs[1:]) / (joins - 1)
        print(f"deflate: filling took {kept:.2f} s of server CPU; {joins} joins "
              f"{sum(costs):.2f} s: first join {costs[0]:.3f} s, "
              f"later ones {later:.3f} s each; wall {wall:.2f} s{extra}")
    finally:
        proc.kill()
        proc.wait()


def stall(binary):
    proc, addr = start(binary, "--deflate", "--history", "20")
    try:
        fill(addr, "/chat/z", (words(1_048_000, i) for i in range(20)))
        member, status = upgrade(addr, "/chat/other")
        assert status == 101
        read_frame(member)
        joiners = [upgrade(addr, "/chat/z", OFFER, read_head=False)[0] for _ in range(8)]
        time.sleep(0.05)
        t0 = time.monotonic()
        send_text(member, "are you there?")
        read_frame(member)
        took = time.monotonic() - t0
        print(f"stall: another room's echo while 8 newcomers that take compression join "
              f"at once: {took * 1000:.0f} ms")
        for s in joiners:
            s.close()
        member.close()
    finally:
        proc.kill()
        proc.wait()


def lockout(binary):
    proc, addr = start(binary, "--history", "5")
    try:
        t0 = time.monotonic()
        refused = 0
        for n in range(1024):
            s, status = upgrade(addr, f"/chat/j{n}")
            if status != 101:
                refused += 1
                s.close()
                continue
            read_frame(s)
            send_text(s, "x")
            read_frame(s)
            s.close()
        took = time.monotonic() - t0
        time.sleep(0.2)
        s, status = upgrade(addr, "/chat")
        s.close()
        s, named = upgrade(addr, "/chat/one-more")
        s.close()
        print(f"lockout: 1,024 cycles in {took:.1f} s ({refused} refused), then /chat: {status}, "
              f"/chat/one-more: {named}, rooms {metric(addr, 'rookery_rooms')}")
    finally:
        proc.kill()
        proc.wait()


def reader(binary):
    proc, addr = start(binary, "--history", "8")
    try:
        fill(addr, "/chat/big", (f"{i:06}:" + "b" * 1_047_993 for i in range(8)))
        s, status = upgrade(addr, "/chat/big")
        read_frame(s)
        got, code = 0, None
        try:
            while got < 8:
                first, payload = read_frame(s)
                if first & 0x0F == 0x8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
                got += 1
        except EOFError:
            code = "EOF"
        s.close()
        print(f"reader: {got} of 8 history messages of 1,048,000 B"
              + (f", then closed with {code}" if code else ", not closed"))
    finally:
        proc.kill()
        proc.wait()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    binary = sys.argv[1]
    chosen = sys.argv[2:] or ["silent", "deflate", "stall", "lockout", "reader"]
    scenarios = {"silent": silent, "deflate": deflate, "stall": stall, "lockout": lockout,
                 "reader": reader}
    for name in chosen:
        scenarios[name](binary)


if __name__ == "__main__":
    main()
