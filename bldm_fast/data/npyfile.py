"""The ``.npy`` data files of a packed-latent dataset: header, size check, sha256.

Needs only numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
from numpy.lib import format as npformat

#: bytes read at a time when hashing a data file
HASH_BLOCK = 8 << 20


def read_npy_header(path: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Read the header of a ``.npy`` file.

    Returns:
        ``(shape, dtype, fortran_order, data_offset)``.

    Raises:
        ValueError: the file is missing or its header is not a valid ``.npy`` header (names the file).
    """
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except FileNotFoundError:
        raise ValueError(f"{name}: file missing ({path})") from None
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{name}: not a valid .npy file ({exc}); the file is truncated or altered") from None
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), offset


def check_npy(path: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Check header and size of a ``.npy`` file against ``shape``/``dtype``; returns the data offset.

    Raises:
        ValueError: naming the file, when it is missing, its header differs, or its size is wrong.
    """
    name = os.path.basename(path)
    got_shape, got_dtype, fortran, offset = read_npy_header(path)
    if got_shape != tuple(shape) or got_dtype != dtype or fortran:
        raise ValueError(
            f"{name}: header says {got_dtype} {got_shape}{' (Fortran order)' if fortran else ''}, "
            f"expected {dtype} {tuple(shape)}; the file is altered or from another dataset")
    expect = offset + math.prod(shape) * dtype.itemsize
    size = os.path.getsize(path)
    if size != expect:
        what = "truncated" if size < expect else "has trailing bytes"
        raise ValueError(f"{name}: {size} bytes, expected {expect}; the file is {what} (altered or incomplete copy)")
    return offset


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
