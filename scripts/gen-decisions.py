#!/usr/bin/env python3
"""Write N monitor-decision records as JSON Lines, the same shape `warden bench ledger` appends.

Usage: python3 scripts/gen-decisions.py N > decisions.jsonl
Used for the end-to-end `warden ledger append` figures in BENCHMARKS.md.
"""
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.stdout
    for i in range(n):
        request = (i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
        out.write(
            '{"kind":"decision","actor":"monitor:fmnist-cnn-v3",'
            '"time":"2026-11-25T12:00:00.%03dZ","subjects":['
            '{"name":"model","digest":"sha256:%064x"},'
            '{"name":"request","digest":"sha256:%064x"}],'
            '"payload":{"verdict":"allow","score":%r,'
            '"detector":"mahalanobis","client":"c-%d"}}\n'
            % (i % 1000, 0xFEED, request, (i % 997) / 997.0, i % 64)
        )


if __name__ == "__main__":
    main()
