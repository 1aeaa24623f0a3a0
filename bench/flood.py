#!/usr/bin/env python3
"""One client against everyone else: the load reproductions behind the rate
and per-address limits (docs/security.md, "Rates and per-address limits").
Python 3 standard library only; each client runs in a process of its own, so
that no client waits for another's turn at the interpreter.

    bench/flood.py flood   [--seconds S] [-- ROOKERY FLAGS...]
    bench/flood.py amplify [--seconds S] [-- ROOKERY FLAGS...]

flood: one client sends 32-byte texts to the chat as fast as the socket
takes them (reading and dropping what comes back), while a member parses
every frame it is sent, as a browser does. Prints how many messages the
member got, and whether and with what code each was closed.

amplify (needs a rookery built with --features deflate; --deflate is
passed): one client sends, every 2 ms, a compressed text of 1,034 bytes on
the wire that inflates to 1,048,560 bytes; a member of the same room reads
all it is sent (without compression); two clients in another room measure
the round trip of a small message every 20 ms. Prints the attacker's upload
rate, what reached the member, the server's CPU use and the other room's
latency percentiles.

The server is ROOKERY (default target/release/rookery; set it with the
environment variable ROOKERY) started on a free port with the given flags
plus -q; run each mode once without limits and once with, e.g.

    bench/flood.py flood -- --rate-limit 100/s:200
    bench/flood.py amplify -- --rate-limit-bytes 1MiB/s:1MiB
"""

import base64
import multiprocessing as mp
import os
import select
import socket
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WELCOME_TIMEOUT = 5.0


def start_server(flags):
    binary = os.environ.get("ROOKERY", os.path.join(ROOT, "target/release/rookery"))
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "-q", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"rookery did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def cpu_seconds(pid):
    """User plus system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(port, path="/chat", deflate=False):
    """An upgraded socket and the bytes that came after the 101's head."""
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed during the handshake")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit(f"upgrade refused: {head[:40]!r}")
    return s, rest


def client_frame(opcode, payload, rsv1=False):
    """A masked client frame (the mask is zero: XOR leaves the payload)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Frames:
    """Parses server frames out of what a socket gives."""

    def __init__(self, sock, rest=b""):
        self.sock, self.buf = sock, bytearray(rest)

    def next(self):
        """(opcode, payload), or None at EOF."""
        while True:
            buf = self.buf
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                at = {126: 4, 127: 10}.get(n, 2)
                if len(buf) >= at:
                    if n == 126:
                        n = struct.unpack_from("!H", buf, 2)[0]
                    elif n == 127:
                        n = struct.unpack_from("!Q", buf, 2)[0]
                    if len(buf) >= at + n:
                        frame = buf[0] & 0x0F, bytes(buf[at : at + n])
                        del buf[: at + n]
                        return frame
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def flooder(port, seconds, out):
    """Sends 32-byte texts as fast as the socket takes them; a reader
    process drops what comes back. Reports messages sent and the close."""
    sock, _ = connect(port)
    batch = client_frame(1, b"f" * 32) * 1000
    reader = mp.Process(target=drain, args=(sock, seconds + 2, out, "flooder"))
    reader.start()
    sent, end = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sock.sendall(batch)
            sent += 1000
    except OSError:
        pass
    out.put(("flooder sent", sent))
    reader.join()


def drain(sock, seconds, out, who):
    """Reads and drops what comes, without parsing (so that it keeps up
    with anything), until EOF or the time is up; reports the code of the
    first close frame seen. The payloads sent here never hold 0x88, so a
    0x88 followed by a length of 2 to 125 is a close frame's header."""
    # No socket timeout: it would make the descriptor, shared with the
    # sending process, non-blocking for that process too.
    code, tail, end = None, b"", time.monotonic() + seconds
    try:
        while code is None and time.monotonic() < end:
            if not select.select([sock], [], [], 0.5)[0]:
                continue
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data = tail + chunk
            at = data.find(b"\x88")
            while at >= 0 and at + 4 <= len(data):
                if 2 <= data[at + 1] <= 125:
                    code = close_code(data[at + 2 : at + 4])
                    break
                at = data.find(b"\x88", at + 1)
            tail = data[-3:]
    except OSError:
        pass
    out.put((f"{who} closed with", code))


def member(port, seconds, out):
    """Parses every frame it is sent, as a browser would."""
    sock, rest = connect(port)
    sock.settimeout(seconds + 2)
    frames, got, code = Frames(sock, rest), 0, None
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            frame = frames.next()
            if frame is None:
                code = "EOF"
                break
            if frame[0] == 8:
                code = close_code(frame[1])
                break
            if frame[0] == 1:
                got += 1
    except OSError as e:
        code = f"error: {e}"
    out.put(("member messages", got))
    out.put(("member closed with", code))


def compressed(payload):
    """`payload` compressed as a permessage-deflate message (no context)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def attacker(port, seconds, out):
    """Every 2 ms, a 1,034-byte frame that inflates to 1,048,560 bytes."""
    sock, _ = connect(port, deflate=True)
    frame = client_frame(1, compressed(b"a" * 1_048_560), rsv1=True)
    reader = mp.Process(target=drain, args=(sock, seconds + 2, out, "attacker"))
    reader.start()
    sent, start = 0, time.monotonic()
    try:
        while time.monotonic() < start + seconds:
            sock.sendall(frame)
            sent += 1
            time.sleep(0.002)
    except OSError:
        pass
    out.put(("attacker wire bytes per message", len(frame)))
    out.put(("attacker upload KiB/s", round(sent * len(frame) / seconds / 1024)))
    reader.join()


def bulk_reader(port, seconds, out):
    """Reads everything it is sent, counting bytes, without parsing."""
    sock, rest = connect(port)
    sock.settimeout(1.0)
    total, end = len(rest), time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
    out.put(("member received MB/s", round(total / seconds / 1e6, 1)))


def other_room(port, seconds, out):
    """Round trips of a small message in another room, every 20 ms."""
    a, _ = connect(port, "/chat/other")
    b, rest = connect(port, "/chat/other")
    fa, fb = Frames(a), Frames(b, rest)
    fa.next()  # welcomes
    fb.next()
    a.settimeout(5)
    b.settimeout(5)
    times, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sent = time.monotonic()
            a.sendall(client_frame(1, b"%.9f" % sent))
            while True:
                opcode, payload = fb.next()
                if opcode == 1 and payload == b"%.9f" % sent:
                    break
            times.append((time.monotonic() - sent) * 1000)
            fa.next()  # its own copy
            time.sleep(0.02)
    except (OSError, TypeError):
        out.put(("other room", "failed"))
    times.sort()
    if times:
        out.put(("other room p50 ms", round(times[len(times) // 2], 2)))
        out.put(("other room p99 ms", round(times[int(len(times) * 0.99)], 2)))


def main():
    args = sys.argv[1:]
    flags = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    if not args or args[0] not in ("flood", "amplify"):
        sys.exit(__doc__)
    mode = args[0]
    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 10.0
    if mode == "amplify":
        flags = ["--deflate", *flags]
    server, port = start_server(flags)
    out = mp.Queue()
    if mode == "flood":
        roles = [(member, seconds), (flooder, seconds)]
    else:
        roles = [(bulk_reader, seconds), (other_room, seconds), (attacker, seconds)]
    procs = []
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    for role, s in roles:
        procs.append(mp.Process(target=role, args=(port, s, out)))
        procs[-1].start()
        time.sleep(0.2)  # members first
    for p in procs:
        p.join()
    cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
    server.terminate()
    server.wait()
    results = []
    while not out.empty():
        results.append(out.get())
    print(f"rookery {' '.join(flags) or '(no limits)'}: {mode}, {seconds:g} s")
    for name, value in sorted(results):
        print(f"  {name}: {value}")
    print(f"  server CPU: {cpu * 100:.0f} %")


if __name__ == "__main__":
    main()
