#!/usr/bin/env python3
"""Writes the bundled sample image: 300 blocks of 4 KiB with byte i = i mod 251 (vector B of
shared/spec/dm-verity.md section 6), generated rather than stored to keep the repository small."""
import sys

n = 4096 * 300
p = bytes(i % 251 for i in range(251))
with open(sys.argv[1], "wb") as f:
    f.write((p * (n // 251 + 1))[:n])
