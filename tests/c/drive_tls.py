#!/usr/bin/env python3
"""Drives the C chat example over TLS: wss clients (Python websockets).

    tests/c/drive_tls.py CERT -- COMMAND...

COMMAND is the example with `--tls CERT KEY` (possibly under valgrind). It
must print `listening on HOST:PORT`. Checks: two wss clients get the welcome,
a text reaches both, and SIGTERM closes them with 1001 and exits 0.
"""
import argparse
import signal
import ssl
import subprocess
import sys
import time

from websockets.sync.client import connect

WELCOME = "Welcome to Rookery Chat!"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="10x timeouts")
    parser.add_argument("cert", help="the certificate to trust")
    parser.add_argument("cmd", nargs="+", help="server command line")
    args = parser.parse_args()
    t = 50 if args.slow else 5
    proc = subprocess.Popen(args.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 4 * t
        while not line.startswith("listening on ") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        if not line.startswith("listening on "):
            print(f"FAIL: no listening line (got {line!r})", file=sys.stderr)
            return 1
        port = int(line.strip().rsplit(":", 1)[1])
        ctx = ssl.create_default_context(cafile=args.cert)
        url = f"wss://localhost:{port}/chat"
        with connect(url, ssl=ctx, open_timeout=t, close_timeout=t) as c1, \
                connect(url, ssl=ctx, open_timeout=t, close_timeout=t) as c2:
            assert c1.recv(timeout=t) == WELCOME, "client 1 gets the welcome"
            assert c2.recv(timeout=t) == WELCOME, "client 2 gets the welcome"
            c1.send("hello over tls")
            assert c1.recv(timeout=t) == "hello over tls", "text reaches its sender"
            assert c2.recv(timeout=t) == "hello over tls", "text reaches client 2"
            proc.send_signal(signal.SIGTERM)
            for c in (c1, c2):
                try:
                    c.recv(timeout=t)
                    print("FAIL: a message instead of the close", file=sys.stderr)
                    return 1
                except Exception:
                    code = c.close_code
                    assert code == 1001, f"closed with 1001 on SIGTERM (got {code})"
        status = proc.wait(timeout=4 * t)
        assert status == 0, f"exits 0 after SIGTERM (got {status})"
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print("all TLS checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
