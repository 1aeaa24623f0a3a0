#!/usr/bin/env python3
"""Compressed size of single chat lines, as rookery's permessage-deflate
sends them: raw DEFLATE (zlib level 6, window 15), each message alone (no
context takeover), sync flush, the 00 00 ff ff tail stripped (RFC 7692
7.2.1). For docs/performance.md ("Compression"): is COMPRESS_MIN = 64 in
src/proto/deflate/mod.rs right? python3 standard library only.

    python3 bench/deflate_sizes.py [SAMPLES]
    python3 bench/deflate_sizes.py --zlib-rs bench/target/release/deflate-sizes [SAMPLES]

By default Python's zlib compresses; with --zlib-rs the same lines go
through bench's `deflate-sizes` (flate2 on zlib-rs, rookery's backend,
`cargo build --release --bin deflate-sizes` in bench/), whose output
differs from zlib's by a few bytes on short messages.
"""
import random
import statistics
import subprocess
import sys
import zlib

# The same names, rooms and lines as the loadgen's chat payload
# (bench/src/bin/loadgen/corpus.rs).
NAMES = "maya tomas priya kenji olu sven amelie diego hana lucas noor grace ivan zoe marco aisha ben yuki fatima leo".split()
ROOMS = "general random dev ops-alerts design support".split()
LINES = [
    "hi all", "morning!", "anyone up for lunch at noon?", "the build on main is green again",
    "brb, coffee", "can someone review my PR before 3?",
    "I think the staging box ran out of disk again", "lol", "thanks, that fixed it",
    "meeting moved to 2:30, same room", "who broke the wifi on the second floor?",
    "does anyone know where the spare HDMI cables went?", "deploying 1.8.2 to prod in five minutes",
    "+1", "the client says the export is still slow on large sheets",
    "I pushed a fix, let me know if you still see it", "happy friday everyone", "sorry, was on mute",
    "can we move the standup to 10 tomorrow?", "the sensor on board 7 reports 41.5 C, is that normal?",
    "nope, back in an hour", "ok, I will take the on-call shift this weekend",
    "did the backup job finish last night?", "great work on the release notes",
    "the link in the handbook is dead, here is the new one",
    "any idea why the tests time out only on CI?", "see you all on monday",
    "first time here, hello from Lisbon!", "could you share the slides from yesterday?",
    "restarting the gateway now, expect a short outage", "yes",
    "that graph looks wrong, the y axis starts at 40", "the cake in the kitchen is for everyone",
    "I can't reproduce it on my machine", "ETA for the firmware update is thursday",
    "where do I find the API keys for the test account?",
]


def line(rng, size):
    """A chat line of exactly `size` bytes: plain "name: text" or a JSON
    envelope, the text made of distinct sentences from LINES, cut to fit."""
    name = rng.choice(NAMES)
    words = []
    # Distinct sentences (no repeats within a line), in random order.
    pool = rng.sample(LINES, len(LINES))
    while sum(len(w) + 2 for w in words) < size:
        words.append(pool.pop())
    text = ". ".join(words)
    if rng.random() < 0.5:
        s = f"{name}: {text}"
        return s[:size].encode()
    head = f'{{"room":"{rng.choice(ROOMS)}","from":"{name}","text":"'
    body = text[: max(0, size - len(head) - 2)]
    s = (head + body + '"}')[:size]
    return s.ljust(size).encode()


def deflate(msg):
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(msg) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def main():
    args = sys.argv[1:]
    rs = None
    if args[:1] == ["--zlib-rs"]:
        rs, args = args[1], args[2:]
    n = int(args[0]) if args else 1000
    rng = random.Random(7692)
    sizes_of = {}
    msgs = []
    for size in (32, 48, 64, 96, 128, 256):
        for _ in range(n):
            msg = line(rng, size)
            assert len(msg) == size
            msgs.append((size, msg))
    if rs:
        feed = "".join(f"{size}\t{msg.hex()}\n" for size, msg in msgs)
        got = subprocess.run([rs], input=feed, capture_output=True, text=True, check=True).stdout
        for row in got.splitlines():
            size, z = row.split("\t")
            sizes_of.setdefault(int(size), []).append(int(z))
    else:
        for size, msg in msgs:
            z = deflate(msg)
            assert zlib.decompressobj(-15).decompress(z + b"\x00\x00\xff\xff") == msg
            sizes_of.setdefault(size, []).append(len(z))
    print("| plain bytes | compressed: median | mean | min–max | median ÷ plain | bytes saved (median) | smaller than plain |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, sizes in sorted(sizes_of.items()):
        med = statistics.median(sizes)
        smaller = sum(1 for s in sizes if s < size) * 100 / n
        print(f"| {size} | {med:.0f} | {statistics.mean(sizes):.1f} | {min(sizes)}–{max(sizes)} | "
              f"{med / size:.2f} | {size - med:.0f} | {smaller:.0f} % |")
    lib = "zlib-rs (flate2, bench's deflate-sizes)" if rs else f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    print(f"\n{n} lines per size; {lib}, level 6, raw, window 15, sync flush, tail stripped.")


if __name__ == "__main__":
    main()
