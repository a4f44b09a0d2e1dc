"""Reads the pixels of the bot's PNG screenshots (8-bit RGB/RGBA, as Chromium writes them), without Pillow.

Enough to tell a screenshot of a page from one of a blank page: `distinct_colours` of a blank page is 1;
text alone (anti-aliased) gives dozens.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type: RGB, RGBA


def png_pixels(path: Path) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array."""
    data = path.read_bytes()
    assert data[:8] == _SIGNATURE, f"{path} is not a PNG"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in _CHANNELS and interlace == 0, (depth, colour, interlace)
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = row.copy()
        elif kind == 1:  # Sub: a running sum per channel (uint8 wraps modulo 256 as PNG wants)
            cur = np.cumsum(row.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:  # Up
            cur = row + prev
        else:  # Average, Paeth: each byte depends on the decoded one to its left
            cur = _unfilter_slow(int(kind), row, prev, bpp)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)


def _unfilter_slow(kind: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = bytearray(row.tobytes())
    up = prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 0xFF
        else:
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), dtype=np.uint8)


def distinct_colours(path: Path) -> int:
    pixels = png_pixels(path)
    flat = pixels[..., :3].reshape(-1, 3).astype(np.uint32)
    return len(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]))
