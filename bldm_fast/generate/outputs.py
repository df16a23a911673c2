"""The output folder of ``sample`` / ``decode``: checked before any work, written under a temporary
name beside it and renamed into place at the end, so a folder named ``--out`` is always complete.

``OutputDir(out, overwrite)`` refuses a file, a non-empty folder (unless ``overwrite``) or a
parent that is not a writable folder, before anything is computed; ``commit()`` renames the
temporary folder to ``out`` (an old ``out`` is moved aside first and deleted after); ``abort()``
deletes the temporary folder. An interrupted run leaves only ``.<name>.partial-*`` beside ``out``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["OutputDir"]


class OutputDir:
    """A temporary folder that becomes ``out`` on :meth:`commit`.

    Raises:
        ValueError: ``out`` is a file, a non-empty folder without ``overwrite``, or its parent
            is missing, not a folder or not writable.
    """

    def __init__(self, out, overwrite: bool = False, *, create: bool = True):
        self.out = os.path.abspath(os.fspath(out))
        self.overwrite = bool(overwrite)
        parent = os.path.dirname(self.out)
        if os.path.lexists(self.out):
            if not os.path.isdir(self.out):
                raise ValueError(f"--out {self.out!r} exists and is not a folder")
            if os.listdir(self.out) and not overwrite:
                raise ValueError(f"--out {self.out!r} is not empty; pass --overwrite to replace it")
        if not os.path.isdir(parent):
            raise ValueError(f"--out {self.out!r}: its parent {parent!r} is not an existing folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"--out {self.out!r}: the folder {parent!r} is not writable")
        self.tmp = None
        if create:
            self.create()

    def create(self) -> str:
        """Create the temporary folder (raises ValueError when that fails) and return it."""
        try:
            self.tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.out)}.partial-",
                                        dir=os.path.dirname(self.out))
        except OSError as exc:
            raise ValueError(f"--out {self.out!r}: cannot create a folder beside it ({exc.strerror or exc})") from None
        return self.tmp

    def path(self, *names: str) -> str:
        """A path inside the temporary folder."""
        return os.path.join(self.tmp, *names)

    def commit(self) -> str:
        """Rename the temporary folder to ``out`` (replacing an empty one, or any with ``overwrite``)."""
        old = None
        if os.path.lexists(self.out):
            if os.listdir(self.out):
                if not self.overwrite:
                    raise ValueError(f"--out {self.out!r} was filled while this command ran; the results stay in "
                                     f"{self.tmp!r}")
                old = tempfile.mkdtemp(prefix=f".{os.path.basename(self.out)}.old-", dir=os.path.dirname(self.out))
                os.rename(self.out, os.path.join(old, "out"))
            else:
                os.rmdir(self.out)
        os.rename(self.tmp, self.out)
        self.tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        """Delete the temporary folder (nothing partial stays behind)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
