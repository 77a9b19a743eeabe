#!/usr/bin/env python3
"""Writes safety-code-v1.json: known answers for Qanat's safety code, version 1 (docs/APP.md §4,
crates/client/src/engine/safety.rs), computed here with Python's hashlib alone, independently of
the Rust code that crates/client/tests/safety_code.rs checks against them.

    python3 crates/client/tests/data/safety-code-v1.py > crates/client/tests/data/safety-code-v1.json

half(key) = first 30 bytes of SHA-512("qanat safety code v1\\0" || u16 len(conv) || conv || key)
digits(half) = six 5-byte big-endian chunks, each mod 100000, zero-padded to 5 digits
code = digits(half(lower key)) || digits(half(higher key))
"""

import hashlib
import json

LABEL = b"qanat safety code v1\x00"


def half(conv: bytes, key: bytes) -> str:
    assert len(key) == 32 and len(conv) < 1 << 16
    h = hashlib.sha512(LABEL + len(conv).to_bytes(2, "big") + conv + key).digest()[:30]
    return "".join("%05d" % (int.from_bytes(h[i : i + 5], "big") % 100000) for i in range(0, 30, 5))


def code(conv: bytes, a: bytes, b: bytes) -> str:
    low, high = sorted([a, b])
    return half(conv, low) + half(conv, high)


def det(label: str, n: int) -> bytes:
    """n reproducible bytes named by label."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"qanat safety vector " + label.encode() + bytes([i])).digest()
        i += 1
    return out[:n]


alice, bob, carol = det("alice", 32), det("bob", 32), det("carol", 32)
close = bob[:31] + bytes([(bob[31] + 1) % 256])  # differs from bob in its last byte only
cases = [
    ("a contact: a 32-byte MLS group id", det("conversation 1", 32), alice, bob),
    ("the same pair given the other way round", det("conversation 1", 32), bob, alice),
    ("the same keys in another conversation", det("conversation 2", 32), alice, bob),
    ("a group: another pair of members", det("conversation 2", 32), alice, carol),
    ("keys that differ in their last byte only", det("conversation 3", 32), close, bob),
    ("extreme keys", bytes(32), bytes(32), b"\xff" * 32),
    ("an empty conversation id", b"", alice, bob),
    ("a conversation id of 300 bytes (both bytes of its length are used)", det("long", 300), carol, bob),
]
vectors = []
for what, conv, a, b in cases:
    vectors.append(
        {
            "what": what,
            "conversation": conv.hex(),
            "a": a.hex(),
            "b": b.hex(),
            "half_a": half(conv, a),
            "half_b": half(conv, b),
            "code": code(conv, a, b),
        }
    )
print(
    json.dumps(
        {
            "description": "Qanat safety code v1 (docs/APP.md §4); written by safety-code-v1.py with Python's hashlib",
            "label": LABEL.decode(),
            "vectors": vectors,
        },
        indent=2,
        ensure_ascii=True,
    )
)
