"""Reading one checkpoint file safely: ``torch.load(weights_only=True)`` with one clear error per failure.

``read_state_dict(path)`` returns the ``{name: tensor}`` mapping of a ``torch.save``-d state dict
(the official ``save_model`` writes ``model.state_dict()``), with a DistributedDataParallel
``module.`` prefix removed. Every way a file can be unusable is one ``ValueError`` that names the
path and what is wrong with it (torch's own messages are several paragraphs, or an internal miniz
text, or a bare ``EOFError``):

* empty (0 bytes);
* truncated or corrupt (a zip archive without its central directory, or a legacy file that ends early);
* not a torch checkpoint at all (random bytes, text, a plain ``pickle`` file, another zip archive);
* a pickle holding Python objects that ``weights_only=True`` refuses to build ("contains Python
  objects; refusing to unpickle"): nothing of it is executed;
* a valid torch file that is not a state dict (not a mapping of names to tensors).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping

import torch

__all__ = ["read_state_dict", "strip_ddp_prefix"]

_ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy (pre-1.6) format starts with the pickled magic number 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def strip_ddp_prefix(sd: dict) -> dict:
    """``sd`` without the ``module.`` prefix that a DistributedDataParallel wrapper's state dict has
    on every key (unchanged when some key lacks it)."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _kind_of_file(path: str, size: int) -> str:
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"checkpoint {path!r} is truncated or corrupt: a zip archive ({size} bytes) without its "
                             "central directory (the end of the file is missing)")
        with zipfile.ZipFile(path) as z:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist()):
                raise ValueError(f"checkpoint {path!r} is not a torch checkpoint: a zip archive without the "
                                 "data.pkl of torch.save")
        return "zip"
    if head == _LEGACY_MAGIC:
        return "legacy"
    if head[:1] == b"\x80":
        raise ValueError(f"checkpoint {path!r} is not a torch checkpoint: a plain Python pickle, not a file written "
                         "by torch.save")
    raise ValueError(f"checkpoint {path!r} is not a torch checkpoint (neither a torch.save zip archive nor a legacy "
                     f"torch file; it starts with bytes {head[:8].hex(' ')})")


def _load(path: str, map_location):
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a directory, not a file")
    if size == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes)")
    kind = _kind_of_file(path, size)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        m = _GLOBAL_RE.search(text)
        if m or "Weights only load failed" in text and "Unsupported operand" not in text:
            what = f" ({m.group(1)})" if m else ""
            raise ValueError(f"checkpoint {path!r} contains Python objects{what}; refusing to unpickle (torch.load "
                             "weights_only=True loads tensors and plain containers only; nothing was executed)"
                             ) from None
        raise ValueError(f"checkpoint {path!r} is corrupt: its pickle cannot be read ({kind} torch file)") from None
    except (EOFError, RuntimeError) as exc:
        text = str(exc)
        if isinstance(exc, EOFError) or "EOF" in text or "central directory" in text or "truncated" in text:
            raise ValueError(f"checkpoint {path!r} is truncated ({size} bytes; the file ends early)") from None
        raise ValueError(f"checkpoint {path!r} is corrupt ({kind} torch file): "
                         f"{text.splitlines()[0] if text else type(exc).__name__}") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"checkpoint {path!r} is corrupt ({kind} torch file; {type(exc).__name__} while reading "
                         "it)") from None


def read_state_dict(path, map_location="cpu") -> dict[str, torch.Tensor]:
    """The state dict saved in ``path``, without a DDP ``module.`` prefix.

    Args:
        path: a file written by ``torch.save(model.state_dict(), path)`` (zip or legacy format).
        map_location: passed to ``torch.load``.
    Returns:
        a dict ``{name: tensor}`` in the file's order.
    Raises:
        ValueError: the file is unreadable, empty, truncated, not a torch file, holds Python
            objects that ``weights_only`` refuses, or is not a mapping of names to tensors; the
            message names the path and the problem.
    """
    path = os.fspath(path)
    sd = _load(path, map_location)
    if not isinstance(sd, Mapping):
        raise ValueError(f"checkpoint {path!r} is not a state_dict: it holds a {type(sd).__name__}, not a mapping "
                         "of names to tensors")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in sd.items() if not (isinstance(k, str) and
                                                                        isinstance(v, torch.Tensor))]
    if bad:
        raise ValueError(f"checkpoint {path!r} is not a state_dict (a mapping of names to tensors): "
                         f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    return strip_ddp_prefix(dict(sd))
