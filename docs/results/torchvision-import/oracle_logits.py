"""Asks `warden harden oracle MODEL` (the oracle protocol of docs/design/hardening.md) for the
logits of the images in an IDX file (N x C x H x W bytes, fed as v / 255), and prints the largest
difference from the logits PyTorch wrote (one row per image, `#` comments allowed).

    python3 oracle_logits.py WARDEN MODEL.onnx images.idx logits.txt
"""
import struct
import subprocess
import sys

warden, model, images, reference = sys.argv[1:5]
raw = open(images, "rb").read()
ndim = raw[3]
dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
pixels = raw[4 + 4 * ndim:]
n = dims[0]
want = [[float(v) for v in line.split("#")[0].split()] for line in open(reference)
        if line.split("#")[0].strip()]
p = subprocess.Popen([warden, "harden", "oracle", model], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
p.stdin.write(struct.pack("<I", n) + struct.pack(f"<{len(pixels)}f", *(b / 255 for b in pixels)))
p.stdin.write(struct.pack("<I", 0))
p.stdin.flush()
count = struct.unpack("<I", p.stdout.read(4))[0]
got = struct.unpack(f"<{count}f", p.stdout.read(4 * count))
p.wait()
classes = count // n
worst = max(abs(got[i * classes + j] - want[i][j]) for i in range(n) for j in range(classes))
scale = max(abs(v) for row in want for v in row)
agree = sum(max(range(classes), key=lambda j: got[i * classes + j]) ==
            max(range(classes), key=lambda j: want[i][j]) for i in range(n))
print(f"{n} images, {classes} classes: max |Δlogit| = {worst:.3e} (logits up to {scale:.1f}); "
      f"same prediction on {agree} of {n}")
