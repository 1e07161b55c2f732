#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Deterministic data for the change-detection scenarios (20-scan, 21-blocksize).

  mixed-data.py image PATH BYTES
      writes a mixed-content image: 1 MiB pieces in the cycle random, text, zero,
      random (half random, a quarter log-like text that lz4 shrinks about 2.4x at
      64 KiB, a quarter zeros, written as real zeros so the file is not sparse),
      then fsyncs it. The same BYTES always gives the same bytes.
  mixed-data.py write PATH --seed S --offsets OUT (--fraction F --block N | --writes N:COUNT,...)
      overwrites blocks of PATH with os.pwrite, alternately random and text, then
      fsyncs. --fraction picks that share of the distinct N-byte blocks;
      --writes does COUNT writes of N bytes at random N-aligned offsets (they may
      overlap). Writes every offset to OUT (one a line, sorted) and prints JSON:
      writes, bytes_written, bytes_changed (distinct bytes covered).
"""
import argparse
import json
import os
import random
import sys

PIECE = 1 << 20
CYCLE = ("random", "text", "zero", "random")


def text_pool(nbytes=16 << 20):
    """Log lines from a small skewed vocabulary: ~2.4x with lz4 at 64 KiB."""
    r = random.Random(20)
    words = ["".join(r.choice("etaoinshrdlucmfwyp") for _ in range(r.randint(2, 8)))
             for _ in range(300)]
    weights = [1.0 / (i + 1) for i in range(len(words))]
    levels = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
    svcs = ("api", "worker", "db-proxy", "scheduler", "auth", "cache")
    out, n = [], 0
    while n < nbytes:
        line = "2024-05-%02dT%02d:%02d:%02d.%03dZ %s %s[%d]: %s status=%d latency_ms=%d\n" % (
            r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59),
            r.randint(0, 999), r.choice(levels), r.choice(svcs), r.randint(1000, 1100),
            " ".join(r.choices(words, weights, k=r.randint(4, 12))),
            r.choice((200, 200, 200, 404, 500)), r.randint(0, 999))
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:nbytes]


def make_image(path, nbytes):
    if nbytes % PIECE:
        sys.exit(f"mixed-data: {nbytes} is not a multiple of 1 MiB")
    r = random.Random(4)
    pool = text_pool()
    zero = bytes(PIECE)
    with open(path, "wb") as f:
        for i in range(nbytes // PIECE):
            kind = CYCLE[i % len(CYCLE)]
            if kind == "random":
                f.write(r.randbytes(PIECE))
            elif kind == "text":
                at = r.randrange(len(pool) - PIECE)
                f.write(pool[at:at + PIECE])
            else:
                f.write(zero)
        f.flush()
        os.fsync(f.fileno())


def write_blocks(args):
    size = os.stat(args.path).st_size
    r = random.Random(args.seed)
    writes = []  # (offset, length)
    if args.fraction is not None:
        n = size // args.block
        for idx in r.sample(range(n), int(n * args.fraction)):
            writes.append((idx * args.block, args.block))
    else:
        for spec in args.writes.split(","):
            blen, count = (int(x) for x in spec.split(":"))
            for _ in range(count):
                writes.append((r.randrange(size // blen) * blen, blen))
    pool = text_pool(4 << 20)
    fd = os.open(args.path, os.O_WRONLY)
    try:
        for i, (off, blen) in enumerate(writes):
            if i % 2:
                at = r.randrange(len(pool) - blen)
                data = pool[at:at + blen]
            else:
                data = r.randbytes(blen)
            os.pwrite(fd, data, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    # Distinct bytes covered, at 4 KiB granularity (every write is 4 KiB aligned).
    pages = set()
    for off, blen in writes:
        pages.update(range(off >> 12, (off + blen) >> 12))
    with open(args.offsets, "w") as f:
        f.writelines(f"{off}\n" for off, _ in sorted(writes))
    json.dump({"writes": len(writes), "bytes_written": sum(b for _, b in writes),
               "bytes_changed": len(pages) << 12}, sys.stdout)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("image")
    im.add_argument("path")
    im.add_argument("bytes", type=int)
    wr = sub.add_parser("write")
    wr.add_argument("path")
    wr.add_argument("--seed", type=int, required=True)
    wr.add_argument("--offsets", required=True)
    wr.add_argument("--fraction", type=float)
    wr.add_argument("--block", type=int, default=4096)
    wr.add_argument("--writes")
    args = ap.parse_args()
    if args.cmd == "image":
        make_image(args.path, args.bytes)
    elif (args.fraction is None) == (args.writes is None):
        sys.exit("mixed-data: write needs exactly one of --fraction and --writes")
    else:
        write_blocks(args)


if __name__ == "__main__":
    main()
