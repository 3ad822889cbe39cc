"""Serves any ONNX classifier to `warden harden eval-blackbox` over the oracle protocol
(docs/design/hardening.md): the black-box path for graphs Warden's engine cannot run itself.

    warden harden eval-blackbox --eps 0.1 -o report.json -- \
        venv/bin/python scripts/oracle/onnxruntime_oracle.py model.onnx

Needs numpy and onnxruntime. The model takes one float32 input of shape [N, C, H, W] and returns
logits (or any scores whose arg-max is the prediction) as its first output.
"""
import struct
import sys

import numpy as np
import onnxruntime as ort

MAX_REQUEST = 4096


def read_exact(stream, n):
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main():
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    c, h, w = (int(d) for d in inp.shape[1:])
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read_exact(stdin, 4)
        if head is None:
            return
        (n,) = struct.unpack("<I", head)
        if n == 0:
            return
        if n > MAX_REQUEST:
            sys.exit(f"request of {n} inputs")
        body = read_exact(stdin, n * c * h * w * 4)
        if body is None:
            sys.exit("truncated request")
        x = np.frombuffer(body, dtype="<f4").reshape(n, c, h, w)
        logits = np.asarray(session.run(None, {inp.name: x})[0], dtype="<f4").reshape(n, -1)
        stdout.write(struct.pack("<I", logits.size))
        stdout.write(logits.tobytes())
        stdout.flush()


if __name__ == "__main__":
    main()
