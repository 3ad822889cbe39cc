#!/usr/bin/env python3
"""Independent auditor for a Warden ledger, in the Python standard library.

It checks what `warden ledger` emits against the RFCs it is built on, without
any of Warden's code or storage:

  root         Recompute every leaf hash of an export (`warden ledger export`)
               and the RFC 6962 Merkle Tree Hash of the first `size` records,
               where `size` and the root come from a checkpoint
               (`warden ledger checkpoint`); the two roots must be equal.
  inclusion    Verify an inclusion proof printed by
               `warden ledger prove --index N [--size M]` (RFC 9162 2.1.3.2).
  consistency  Verify a consistency proof printed by
               `warden ledger prove --from M --to N` (RFC 9162 2.1.4.2).

Hashes (RFC 6962 section 2.1, RFC 9162 section 2.1.1):

  leaf hash  = SHA-256(0x00 || leaf bytes)
  node hash  = SHA-256(0x01 || left || right)
  empty tree = SHA-256("")

This script does NOT check the checkpoint's Ed25519 signature: verify the
signed note with any C2SP signed-note verifier (for example
golang.org/x/mod/sumdb/note) and the verifier key you pinned when the ledger
was created, or with `warden ledger verify --key KEY --checkpoint FILE`.
A proof only shows that its hashes agree with the root printed next to it;
compare that root with a checkpoint you trust (use --checkpoint).

Exit status: 0 when everything checked holds, 1 when something does not (the
problem is printed on stderr), 2 for usage errors.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys

HASH_LEN = 32
MAX_U64 = (1 << 64) - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()


class AuditError(Exception):
    """Something the auditor was given does not hold or cannot be read."""


def leaf_hash(leaf):
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def b64(raw):
    """Standard base64 with padding, as Warden prints hashes."""
    return base64.b64encode(raw).decode("ascii")


def decode_b64(text, what):
    """Decode standard, padded, canonical base64; anything else is refused."""
    if not isinstance(text, str):
        raise AuditError(f"{what}: expected a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise AuditError(f"{what}: not valid base64 ({e})") from None
    if b64(raw) != text:
        raise AuditError(f"{what}: not canonical padded base64")
    return raw


def decode_hash(text, what):
    """Decode a base64 hash, which must be exactly 32 bytes."""
    raw = decode_b64(text, what)
    if len(raw) != HASH_LEN:
        raise AuditError(f"{what}: a hash is {len(raw)} bytes, expected 32")
    return raw


def check_u64(value, what):
    """A JSON integer in 0..2^64-1 (JSON true/false are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuditError(f"{what}: expected a non-negative integer")
    if not 0 <= value <= MAX_U64:
        raise AuditError(f"{what}: {value} is out of range")
    return value


def no_duplicates(pairs):
    """json object_pairs_hook that refuses duplicate keys."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise AuditError(f"duplicate JSON key {key!r}")
        obj[key] = value
    return obj


def parse_json(data, what):
    """Parse one JSON object strictly (UTF-8, no duplicate keys)."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except AuditError as e:
        raise AuditError(f"{what}: {e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise AuditError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise AuditError(f"{what}: expected a JSON object")
    return value


def read_bytes(path):
    """Read a whole file, or '-' for stdin."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise AuditError(f"cannot read {path}: {e}") from None


def open_lines(path):
    """Yield the lines of a file ('-' for stdin) without their newline."""
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise AuditError(f"cannot read {path}: {e}") from None
    try:
        for line in f:
            yield line[:-1] if line.endswith(b"\n") else line
    except OSError as e:
        raise AuditError(f"cannot read {path}: {e}") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()


# --- The Merkle Tree Hash (RFC 6962 section 2.1) ---------------------------

class TreeHasher:
    """Computes MTH(D[n]) of a stream of leaf hashes in O(log n) memory.

    RFC 6962 defines MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
    with k the largest power of two smaller than n. Unrolled, the tree of n
    leaves is the perfect subtrees given by the binary digits of n, largest
    (leftmost) first, and its root folds them from the right:
    MTH = H(P1, H(P2, ... H(Pm-1, Pm))). The stack below holds those perfect
    subtrees as (size, hash); a new leaf is merged with equal-sized subtrees
    on top of it, like carrying in binary addition.
    """

    def __init__(self):
        self.size = 0
        self.stack = []

    def push(self, h):
        """Append the leaf hash h."""
        size = 1
        while self.stack and self.stack[-1][0] == size:
            _, left = self.stack.pop()
            h = node_hash(left, h)
            size *= 2
        self.stack.append((size, h))
        self.size += 1

    def root(self):
        """MTH of the leaves pushed so far (SHA-256("") for none)."""
        if not self.stack:
            return EMPTY_ROOT
        r = self.stack[-1][1]
        for _, h in reversed(self.stack[:-1]):
            r = node_hash(h, r)
        return r


# --- Proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) ------------

def verify_inclusion(leaf_index, tree_size, h, path, root):
    """RFC 9162 2.1.3.2, step by step. Raises AuditError on failure."""
    for x in [h, root] + list(path):
        if len(x) != HASH_LEN:
            raise AuditError(f"a hash is {len(x)} bytes, expected 32")
    # 1. leaf_index must be below tree_size.
    if leaf_index >= tree_size:
        raise AuditError(
            f"leaf index {leaf_index} is not below tree size {tree_size}")
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn = leaf_index, tree_size - 1
    r = h
    # 4. For each p in the inclusion path:
    for p in path:
        # a. sn == 0: fail.
        if sn == 0:
            raise AuditError("inclusion proof is too long")
        # b. LSB(fn) set, or fn == sn:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # c. shift once.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 and r must equal the root.
    if sn != 0:
        raise AuditError("inclusion proof is too short")
    if r != root:
        raise AuditError("computed root does not match the proof's root")


def verify_consistency(first, second, path, first_hash, second_hash):
    """RFC 9162 2.1.4.2, step by step. Raises AuditError on failure.

    A proof from the empty tree is not defined (size1 0 is refused); equal
    sizes need an empty proof and equal roots (PROOF(n, D[n]) is empty in
    RFC 6962 2.1.2).
    """
    for x in [first_hash, second_hash] + list(path):
        if len(x) != HASH_LEN:
            raise AuditError(f"a hash is {len(x)} bytes, expected 32")
    if first == 0:
        raise AuditError("a consistency proof from size 0 is not defined")
    if first > second:
        raise AuditError(f"size1 {first} is larger than size2 {second}")
    if first == second:
        if path:
            raise AuditError("proof for equal tree sizes must be empty")
        if first_hash != second_hash:
            raise AuditError("equal tree sizes but different roots")
        return
    # 1. An empty path fails.
    if not path:
        raise AuditError("consistency proof is empty")
    path = list(path)
    # 2. If first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, shift both until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = first value.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        # a. sn == 0: fail.
        if sn == 0:
            raise AuditError("consistency proof is too long")
        # b. LSB(fn) set, or fn == sn:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. shift once.
        fn >>= 1
        sn >>= 1
    # 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise AuditError("consistency proof is too short")
    if fr != first_hash:
        raise AuditError("computed root1 does not match the proof's root1")
    if sr != second_hash:
        raise AuditError("computed root2 does not match the proof's root2")


# --- Checkpoints (C2SP tlog-checkpoint inside a C2SP signed-note) ----------

def parse_checkpoint(path):
    """Return (origin, size, root) of a checkpoint file.

    The file is a signed note (body, a blank line, signature lines) or a bare
    checkpoint body. The signature is not checked here.
    """
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{path}: checkpoint is not UTF-8") from None
    split = text.rfind("\n\n")
    body = text[:split + 1] if split >= 0 else text
    if not body.endswith("\n"):
        raise AuditError(f"{path}: checkpoint must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise AuditError(f"{path}: checkpoint needs origin, size and root")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not origin:
        raise AuditError(f"{path}: empty origin line")
    if (not size_s or not size_s.isascii() or not size_s.isdigit()
            or (len(size_s) > 1 and size_s[0] == "0")):
        raise AuditError(
            f"{path}: size must be a decimal number without leading zeros")
    size = check_u64(int(size_s), f"{path}: size")
    root = decode_hash(root_s, f"{path}: root hash")
    if any(not line for line in lines[3:]):
        raise AuditError(f"{path}: empty extension line")
    return origin, size, root


def match_checkpoints(paths, pairs):
    """Each checkpoint in paths must commit to one of the (size, root)."""
    for path in paths or []:
        origin, size, root = parse_checkpoint(path)
        known = dict(pairs)
        if size not in known:
            sizes = " or ".join(str(s) for s, _ in pairs)
            raise AuditError(
                f"{path}: checkpoint is for size {size}, the proof for "
                f"size {sizes}")
        if known[size] != root:
            raise AuditError(
                f"{path}: the checkpoint's root at size {size} differs from "
                f"the proof's root")


# --- Commands ---------------------------------------------------------------

def cmd_root(args):
    """Recompute leaf hashes and the root of an export; compare."""
    origin, size, root = parse_checkpoint(args.checkpoint)
    tree = TreeHasher()
    at_size = EMPTY_ROOT if size == 0 else None
    n = 0
    for line_no, line in enumerate(open_lines(args.export), 1):
        where = f"{args.export} line {line_no}"
        obj = parse_json(line, where)
        if set(obj) != {"index", "leaf", "leaf_hash"}:
            raise AuditError(
                f"{where}: expected exactly the members index, leaf, "
                f"leaf_hash; got {', '.join(sorted(obj))}")
        index = check_u64(obj["index"], f"{where}: index")
        if index != n:
            raise AuditError(
                f"{where}: index {index}, expected {n} (records must start "
                f"at 0 and follow in order without gaps)")
        leaf = decode_b64(obj["leaf"], f"{where}: leaf")
        stated = decode_hash(obj["leaf_hash"], f"{where}: leaf_hash")
        h = leaf_hash(leaf)
        if h != stated:
            raise AuditError(
                f"record {index}: SHA-256(0x00 || leaf) is {b64(h)}, but the "
                f"export says {b64(stated)}")
        tree.push(h)
        n += 1
        if n == size:
            at_size = tree.root()
    if at_size is None:
        raise AuditError(
            f"the checkpoint commits to {size} records but the export has "
            f"only {n}: records are missing or the log was rolled back")
    if at_size != root:
        raise AuditError(
            f"the root of the first {size} records is {b64(at_size)}, but "
            f"the checkpoint of {origin} says {b64(root)}: the records differ "
            f"from the ones the checkpoint committed to")
    print(f"ok: {n} records, root {b64(at_size)} at size {size} matches the "
          f"checkpoint of {origin}")
    if n > size:
        print(f"note: records {size}..={n - 1} are not covered by this "
              f"checkpoint", file=sys.stderr)
    print("note: the checkpoint's signature was not checked; verify it with "
          "a C2SP signed-note verifier and your pinned key", file=sys.stderr)


def load_proof(path, fields):
    """Read a proof JSON file; it must have exactly the given members."""
    obj = parse_json(read_bytes(path), path)
    if set(obj) != set(fields):
        raise AuditError(
            f"{path}: expected exactly the members {', '.join(fields)}; got "
            f"{', '.join(sorted(obj))}")
    if not isinstance(obj["proof"], list):
        raise AuditError(f"{path}: proof must be an array")
    proof = [decode_hash(p, f"{path}: proof[{i}]")
             for i, p in enumerate(obj["proof"])]
    return obj, proof


def cmd_inclusion(args):
    """Verify an inclusion proof."""
    obj, proof = load_proof(
        args.proof, ["leafIdx", "treeSize", "root", "leafHash", "proof"])
    index = check_u64(obj["leafIdx"], "leafIdx")
    size = check_u64(obj["treeSize"], "treeSize")
    root = decode_hash(obj["root"], "root")
    h = decode_hash(obj["leafHash"], "leafHash")
    verify_inclusion(index, size, h, proof, root)
    match_checkpoints(args.checkpoint, [(size, root)])
    print(f"ok: leaf {index} ({b64(h)}) is in the tree of size {size} with "
          f"root {b64(root)}")


def cmd_consistency(args):
    """Verify a consistency proof."""
    obj, proof = load_proof(
        args.proof, ["size1", "size2", "root1", "root2", "proof"])
    size1 = check_u64(obj["size1"], "size1")
    size2 = check_u64(obj["size2"], "size2")
    root1 = decode_hash(obj["root1"], "root1")
    root2 = decode_hash(obj["root2"], "root2")
    verify_consistency(size1, size2, proof, root1, root2)
    match_checkpoints(args.checkpoint, [(size1, root1), (size2, root2)])
    print(f"ok: the tree of size {size1} (root {b64(root1)}) is a prefix of "
          f"the tree of size {size2} (root {b64(root2)})")


def main(argv=None):
    """Parse arguments, run one command, return the exit status."""
    parser = argparse.ArgumentParser(
        prog="audit.py",
        description="Independently check a Warden ledger's export, "
        "checkpoint and proofs against RFC 6962 / RFC 9162.",
        epilog="The checkpoint's Ed25519 signature is NOT checked: use any "
        "C2SP signed-note verifier with the verifier key you pinned, or "
        "`warden ledger verify --key KEY --checkpoint FILE`. Exit status: 0 "
        "ok, 1 a check failed, 2 usage error.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "root",
        help="recompute leaf hashes and the root of an export and compare "
        "it with a checkpoint",
        description="Recompute SHA-256(0x00 || leaf) of every exported "
        "record, check it against leaf_hash, check the indexes are 0..n-1 "
        "in order, and compare the Merkle Tree Hash of the first SIZE "
        "records with the checkpoint (SIZE and root from its second and "
        "third lines). The checkpoint's signature is NOT checked.")
    p.add_argument("--export", required=True, metavar="EXPORT.jsonl",
                   help="output of `warden ledger export` ('-' for stdin)")
    p.add_argument("--checkpoint", required=True, metavar="CHECKPOINT.txt",
                   help="output of `warden ledger checkpoint` (a signed "
                   "note) or a bare checkpoint body")
    p.set_defaults(func=cmd_root)

    for name, fn, what in [
            ("inclusion", cmd_inclusion,
             "`warden ledger prove --index N [--size M]` (RFC 9162 2.1.3.2)"),
            ("consistency", cmd_consistency,
             "`warden ledger prove --from M --to N` (RFC 9162 2.1.4.2)")]:
        p = sub.add_parser(
            name, help=f"verify a proof printed by {what}",
            description=f"Verify a {name} proof printed by {what}. It shows "
            "only that the proof agrees with the root(s) in the same file; "
            "pass --checkpoint to also compare them with checkpoints you "
            "hold (whose signatures are NOT checked here).")
        p.add_argument("proof", metavar="PROOF.json",
                       help="the proof JSON ('-' for stdin)")
        p.add_argument("--checkpoint", action="append", metavar="FILE",
                       help="a checkpoint that must match one of the proof's "
                       "(size, root) pairs; repeatable")
        p.set_defaults(func=fn)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except AuditError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
