"""Protobuf wire-format pieces for tests that hand-craft encodings (merged fields, truncations)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    """The key of field number ``field`` with wire type ``wire``."""
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    """Field ``field`` holding ``payload`` (wire type 2)."""
    return tag(field, 2) + varint(len(payload)) + payload
