#!/usr/bin/env python3
"""The cost of a rookery.v1 resume (docs/performance.md, "rookery.v1"):
server CPU per message handed back, against a plain newcomer's history
replay of the same messages. Python's standard library only (the raw client
of history_limits.py).

  A room /chat/r is filled with HISTORY messages of 64 bytes (--history
  HISTORY); then, ROUNDS times each, interleaved: a plain newcomer reads the
  whole history; a rookery.v1 client resumes with ?since=EPOCH:0 and reads
  every missed message and `recovered`. Reported: the server's CPU time
  (/proc/PID/schedstat, in ns: the 10 ms ticks of /proc/PID/stat are too
  coarse here) per message handed over, summed over the rounds.

Usage: bench/resume.py BINARY [HISTORY [ROUNDS]]   (a release build)
"""

import json
import sys

from history_limits import fill, read_frame, rss_kib, start, upgrade

V1 = "Sec-WebSocket-Protocol: rookery.v1\r\n"


def cpu_seconds(proc):
    with open(f"/proc/{proc.pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def read_all(addr, path, extra, expect):
    s, status = upgrade(addr, path, extra)
    assert status == 101, status
    read_frame(s)  # the welcome
    for _ in range(expect):
        read_frame(s)
    s.close()


def main():
    binary = sys.argv[1]
    history = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    proc, addr = start(binary, "--history", str(history), "--idle-timeout", "0")
    try:
        rss = rss_kib(proc)
        fill(addr, "/chat/r", ["%06d:" % n + "x" * 57 for n in range(history)])
        kept = (rss_kib(proc) - rss) * 1024 / history
        s, _ = upgrade(addr, "/chat/r", V1)
        epoch = json.loads(read_frame(s)[1])["epoch"]
        s.close()
        s, _ = upgrade(addr, "/chat/r", V1)
        read_frame(s)
        envelope = len(read_frame(s)[1])
        s.close()
        print(f"history: {kept:.0f} B of RSS per message kept (64 B of text: a frame of 66 B "
              f"and an envelope frame of {envelope + 2} B, with their Rc and queue slots)")
        per = {"plain history": 0.0, "v1 resume": 0.0}
        for _ in range(rounds):
            for name, path, extra, expect in [
                ("plain history", "/chat/r", "", history),
                ("v1 resume", f"/chat/r?since={epoch}:0", V1, history + 1),
            ]:
                before = cpu_seconds(proc)
                read_all(addr, path, extra, expect)
                per[name] += cpu_seconds(proc) - before
        for name, cpu in per.items():
            print(f"{name}: {cpu / (history * rounds) * 1e9:.0f} ns server CPU per message "
                  f"({cpu * 1e3:.1f} ms for {rounds} x {history} messages)")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
