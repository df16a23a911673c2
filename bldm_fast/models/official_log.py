"""The hparams an official training run logged into ``<log_dir>/log.txt``.

The official scripts (``train_ae_dist.py``, ``train_sampler_online.py``) call
``utils/log_utils.config_log(log_dir)`` (``logging.basicConfig(filename=log_dir/log.txt,
format="%(asctime)s - %(message)s")``, appending) and then ``start_training_log(H)``, which logs
``"Using following hparams:"`` followed by one ``> key: value`` line per hparam in sorted key
order, ``value`` being ``str()`` of the Python value. So a line reads
``2023-05-01 10:00:00,123 - > bert_n_head: 12``. A run that was restarted appends another block;
the last block describes the weights saved last.

Values are parsed back as Python literals where ``str()`` wrote one (ints, floats, ``True``/
``False``, ``None``, lists such as ``[1, 16, 16]``; ``inf``/``nan`` too), else kept as strings
(``linear``, paths, an empty string).
"""

from __future__ import annotations

import ast
import math
import os
import re

__all__ = ["LOG_NAME", "find_log", "parse_value", "read_hparams"]

LOG_NAME = "log.txt"
_START = "Using following hparams:"
_LINE = re.compile(r"^(?:.*? - )?> (\w+): ?(.*)$")
_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def parse_value(text: str):
    """The Python value whose ``str()`` is ``text`` (a literal), else ``text`` itself."""
    text = text.rstrip("\r\n")
    stripped = text.strip()
    if stripped in _FLOATS:
        return _FLOATS[stripped]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()


def read_hparams(path) -> dict:
    """The hparams of the last ``start_training_log`` block of an official ``log.txt``.

    Args:
        path: the ``log.txt`` file.
    Returns:
        ``{key: value}`` (see :func:`parse_value`); empty when the file holds no hparam block.
    Raises:
        ValueError: the file cannot be read or is not text.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"official log {path!r} cannot be read: {exc}") from None
    block: dict | None = None
    current: dict | None = None
    for line in lines:
        if line.endswith(_START):
            current = {}
            block = current
            continue
        m = _LINE.match(line)
        if m and current is not None:
            current[m.group(1)] = parse_value(m.group(2))
        elif current is not None and current:
            current = None  # the block ended (the next log line is something else)
    return block or {}


def find_log(path) -> str | None:
    """The official ``log.txt`` that describes ``path`` (a checkpoint file or a log directory), or None.

    A file in ``<log_dir>/saved_models/`` is described by ``<log_dir>/log.txt``; a directory by
    its own ``log.txt`` (or its parent's, when it is ``saved_models``).
    """
    path = os.path.abspath(os.fspath(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    candidates = [os.path.join(folder, LOG_NAME)]
    if os.path.basename(folder) == "saved_models":
        candidates.append(os.path.join(os.path.dirname(folder), LOG_NAME))
    return next((c for c in candidates if os.path.isfile(c)), None)
