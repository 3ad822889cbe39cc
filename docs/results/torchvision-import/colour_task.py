"""Writes the 3 x 16 x 16 colour task of this folder's README as IDX files in the current
directory: train-images.idx / train-labels.idx (900) and test-images.idx / test-labels.idx (300).
Class k: a bright 4 x 4 square (180 to 239) in channel k at a random place, over noise (0 to 69)
in every channel. Python's `random` with seed 0.

    python3 colour_task.py
"""
import random
import struct


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


random.seed(0)
for name, n in [("train", 900), ("test", 300)]:
    imgs, labs = [], []
    for i in range(n):
        k = i % 3
        y0, x0 = random.randrange(12), random.randrange(12)
        for ch in range(3):
            for y in range(16):
                for x in range(16):
                    lit = ch == k and y0 <= y < y0 + 4 and x0 <= x < x0 + 4
                    imgs.append(180 + random.randrange(60) if lit else random.randrange(70))
        labs.append(k)
    with open(f"{name}-images.idx", "wb") as f:
        f.write(idx([n, 3, 16, 16], imgs))
    with open(f"{name}-labels.idx", "wb") as f:
        f.write(idx([n], labs))
