#!/usr/bin/env python3
"""Offsets through Redis (docs/performance.md, "rookery.v1 through Redis"):
what numbering every message in Redis costs a node, and what a resume
served from Redis costs. Python's standard library only (the raw client of
history_limits.py); a redis-server of its own on a free port.

  round trip: one member says a 64-byte line and waits for it to come back,
    COUNT times, on a node without --redis and on one with it (numbered
    by a script in Redis, then back through pub/sub): p50 / p99 in us.
  resume: a room of HISTORY messages said on node 1; then, ROUNDS times, a
    fresh node 2 (never had the room) gets a rookery.v1 client resuming
    from EPOCH:0: node 2 reads the room's log from Redis and hands every
    message over. Against it, a second such resume on the same node 2
    (served from what it now holds). Server CPU of node 2
    (/proc/PID/schedstat, ns) per message handed over.

Usage: bench/cluster_resume.py BINARY [HISTORY [ROUNDS [COUNT]]]
       (a release build with --features redis)
"""

import json
import socket
import statistics
import subprocess
import sys
import time

from history_limits import fill, read_frame, send_text, start, upgrade

V1 = "Sec-WebSocket-Protocol: rookery.v1\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(proc):
    with open(f"/proc/{proc.pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def connected(addr):
    from history_limits import metric

    for _ in range(200):
        if metric(addr, "rookery_redis_connected") == 1:
            return
        time.sleep(0.02)
    raise SystemExit("node did not connect to redis")


def round_trips(addr, count):
    s, status = upgrade(addr, "/chat/rt")
    assert status == 101, status
    read_frame(s)
    line = "x" * 64
    times = []
    for _ in range(count):
        t = time.perf_counter()
        send_text(s, line)
        read_frame(s)
        times.append((time.perf_counter() - t) * 1e6)
    s.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def resume(addr, epoch, expect):
    s, status = upgrade(addr, f"/chat/r?since={epoch}:0", V1)
    assert status == 101, status
    read_frame(s)  # the welcome
    for _ in range(expect):
        read_frame(s)
    s.close()


def main():
    binary = sys.argv[1]
    history = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    procs = [redis]
    try:
        time.sleep(0.3)
        alone, a = start(binary, "--idle-timeout", "0")
        procs.append(alone)
        joined, j = start(binary, "--idle-timeout", "0", "--redis", url)
        procs.append(joined)
        connected(j)
        for name, addr in [("without --redis", a), ("with --redis", j)]:
            p50, p99 = round_trips(addr, count)
            print(f"round trip {name}: p50 {p50:.0f} us, p99 {p99:.0f} us ({count} lines)")
        n1, addr1 = start(binary, "--history", str(history), "--idle-timeout", "0",
                          "--redis", url)
        procs.append(n1)
        connected(addr1)
        fill(addr1, "/chat/r", ["%06d:" % n + "x" * 57 for n in range(history)])
        s, _ = upgrade(addr1, "/chat/r", V1)
        epoch = json.loads(read_frame(s)[1])["epoch"]
        s.close()
        per = {"from Redis": 0.0, "from the node": 0.0}
        for _ in range(rounds):
            n2, addr2 = start(binary, "--history", str(history), "--idle-timeout", "0",
                              "--redis", url)
            try:
                connected(addr2)
                for name in per:
                    before = cpu_seconds(n2)
                    resume(addr2, epoch, history + 1)
                    per[name] += cpu_seconds(n2) - before
            finally:
                n2.kill()
                n2.wait()
        for name, cpu in per.items():
            print(f"resume {name}: {cpu / (history * rounds) * 1e9:.0f} ns server CPU per message "
                  f"({cpu * 1e3:.1f} ms for {rounds} x {history} messages)")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
