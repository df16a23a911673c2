"""Image folders: a deterministic list of the images, their sha256, optional class labels, and
the files that cannot be used (with the reason).

The order is that of ``torchvision.datasets.ImageFolder`` (which the official code reads custom
datasets with), so row ``i`` of an encoded dataset is sample ``i`` of the official dataset:
classes in sorted order, and in each, ``sorted(os.walk(class_dir))`` with the file names of each
directory sorted. Without labels the whole tree is walked the same way. Names compare as Python
strings (code points), so the order does not depend on the locale or the file system.

Candidates are files whose name ends (case-insensitively) in one of :data:`IMAGE_EXTENSIONS`;
files that ImageFolder would also read (:data:`UNSUPPORTED_EXTENSIONS`: BMP, PPM, PGM, TIFF, and
GIF) are listed as skipped, every other file is ignored. A candidate is *usable* when Pillow
identifies it as PNG, JPEG or WebP and decodes it completely (JPEGs are decoded at reduced scale,
which still reads every byte of the entropy-coded data, so truncation is caught); anything else is
*skipped* with a reason.
``ImageFile.LOAD_TRUNCATED_IMAGES = True`` set elsewhere in the process would let truncated files
through, as it would in the official loader.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

try:
    from PIL import Image, UnidentifiedImageError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("bldm_fast.data needs Pillow: pip install Pillow") from exc

__all__ = ["IMAGE_EXTENSIONS", "UNSUPPORTED_EXTENSIONS", "ImageFolderScan", "ImageRecord", "assemble_scan",
           "check_files", "check_image_bytes", "file_sha256", "list_image_files", "scan_image_folder",
           "source_digest"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: image files that ImageFolder would read but this package does not: listed as skipped, not ignored
UNSUPPORTED_EXTENSIONS = (".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")
FORMATS = ("PNG", "JPEG", "WEBP")
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: ``path`` relative to the root (``/``-separated), the hex ``sha256`` of the
    file's bytes, and its class index (``None`` without labels)."""

    path: str
    sha256: str
    label: int | None = None


@dataclass
class ImageFolderScan:
    """The result of :func:`scan_image_folder`.

    Attributes:
        root: the folder, an absolute path.
        files: the usable images in dataset order (row ``i`` of the dataset is ``files[i]``).
        skipped: ``(relative path, reason)`` of every image file that is not used: first those
            ruled out when listing (outside the class folders, unsupported formats), then the
            unusable candidates, each group in walk order.
        classes: the sorted first-level subfolder names (label ``i`` is ``classes[i]``), or None.
        digest: :func:`source_digest` of ``files``.
    """

    root: str
    files: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] | None = None
    digest: str = ""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def with_labels(self) -> bool:
        return self.classes is not None

    def abspath(self, i: int) -> str:
        """The absolute path of ``files[i]``."""
        return os.path.join(self.root, *self.files[i].path.split("/"))

    def labels(self) -> list[int]:
        """The class index of every file (raises ValueError when scanned without labels)."""
        if self.classes is None:
            raise ValueError("the folder was scanned without labels")
        return [f.label for f in self.files]

    def meta(self) -> dict:
        """A JSON-ready description for a dataset's ``meta.json``: root, count, digest, classes,
        ``files`` as ``[path, sha256]`` (``[path, sha256, label]`` with labels) and ``skipped`` as
        ``[path, reason]``."""
        files = [[f.path, f.sha256] + ([f.label] if self.classes is not None else []) for f in self.files]
        return {"root": self.root, "count": len(self.files), "digest": self.digest, "classes": self.classes,
                "files": files, "skipped": [list(s) for s in self.skipped]}


def _is_candidate(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(top: str, root: str, unsupported: list) -> list[str]:
    """ImageFolder's walk below ``top``: relative ``/``-paths of the candidates in order; files of
    :data:`UNSUPPORTED_EXTENSIONS` are appended to ``unsupported`` as ``(path, reason)``."""
    out = []
    for dirpath, _, fnames in sorted(os.walk(top, followlinks=True)):
        rel_dir = os.path.relpath(dirpath, root)
        for fname in sorted(fnames):
            rel = (fname if rel_dir == "." else os.path.join(rel_dir, fname)).replace(os.sep, "/")
            if _is_candidate(fname):
                out.append(rel)
            elif fname.lower().endswith(UNSUPPORTED_EXTENSIONS):
                unsupported.append((rel, "unsupported format (PNG, JPEG and WebP only)"))
    return out


def list_image_files(root, *, labels: bool = False) -> tuple[list[tuple[str, int | None]], list[str] | None,
                                                                   list[tuple[str, str]]]:
    """The candidate image files below ``root`` in dataset order, without opening them.

    Args:
        root: the image folder.
        labels: take class labels from the first-level subfolders (sorted names -> 0, 1, ...).
    Returns:
        ``(candidates, classes, outside)``: ``candidates`` are ``(relative path, label or None)``;
        ``classes`` the sorted subfolder names or None; ``outside`` lists ``(path, reason)`` of
        image files directly in ``root`` when ``labels`` (they belong to no class), then of files
        with :data:`UNSUPPORTED_EXTENSIONS`.
    Raises:
        FileNotFoundError: ``root`` is not a directory. ValueError: ``labels`` and ``root`` has
        no subfolder.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} is not a directory")
    unsupported: list[tuple[str, str]] = []
    if not labels:
        return [(p, None) for p in _walk(root, root, unsupported)], None, unsupported
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ValueError(f"labels=True needs class subfolders in {root!r}, found none")
    candidates = []
    for i, cls in enumerate(classes):
        candidates += [(p, i) for p in _walk(os.path.join(root, cls), root, unsupported)]
    outside = [(e.name, "not inside a class subfolder (labels=True)") for e in
               sorted(os.scandir(root), key=lambda e: e.name)
               if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS + UNSUPPORTED_EXTENSIONS)]
    return candidates, classes, outside + unsupported


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def check_image_bytes(data: bytes) -> str | None:
    """Why ``data`` is not a usable image, or None when it is.

    Usable: Pillow identifies it as PNG, JPEG or WebP, decodes it completely (JPEG at reduced scale)
    and converts it to RGB. Reasons are short, deterministic texts (no memory addresses or paths).
    """
    if not data:
        return "empty file"
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            if im.format == "JPEG":
                im.draft("RGB", (1, 1))  # DCT-domain downscale: fast, still reads all the data
            im.load()
            im.convert("RGB")
    except UnidentifiedImageError:
        return "not a PNG, JPEG or WebP image (Pillow cannot identify it)"
    except Image.DecompressionBombError as exc:
        return f"too large: {exc}"
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        return f"cannot decode: {type(exc).__name__}: {exc}"
    return None


def _check_file(path: str) -> tuple[str | None, str | None]:
    """``(sha256, None)`` for a usable image, ``(sha256 or None, reason)`` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return None, f"cannot read: {type(exc).__name__}: {exc.strerror or exc}"
    return hashlib.sha256(data).hexdigest(), check_image_bytes(data)


def check_files(root: str, paths: list[str], *, workers: int | None = None,
                progress: bool = False) -> list[tuple[str | None, str | None]]:
    """``(sha256, reason or None)`` (:func:`check_image_bytes`) of each relative path below ``root``,
    in order, on a thread pool of ``workers`` threads (default ``min(8, cpu_count)``; Pillow
    decodes without the GIL); ``progress``: a tqdm bar."""
    from tqdm.auto import tqdm

    workers = workers or min(8, os.cpu_count() or 1)
    abs_paths = [os.path.join(root, *p.split("/")) for p in paths]
    bar = tqdm(total=len(abs_paths), unit="file", desc="scan images", disable=not progress)
    try:
        if workers <= 1 or len(abs_paths) <= 1:
            out = []
            for p in abs_paths:
                out.append(_check_file(p))
                bar.update()
            return out
        with ThreadPoolExecutor(workers) as pool:
            out = []
            for res in pool.map(_check_file, abs_paths):
                out.append(res)
                bar.update()
            return out
    finally:
        bar.close()


def source_digest(files) -> str:
    """The source-list digest: hex sha256 of the UTF-8 text with one line per image,
    ``path TAB sha256 TAB label LF`` (``label`` empty without labels), in dataset order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\t{f.sha256}\t{'' if f.label is None else f.label}\n".encode())
    return h.hexdigest()


def assemble_scan(root, candidates, classes, outside, checked, *, strict: bool = False) -> ImageFolderScan:
    """An :class:`ImageFolderScan` from :func:`list_image_files` output and :func:`check_files`
    results (one per candidate). Raises ValueError under ``strict`` when anything was skipped."""
    files, skipped = [], list(outside)
    for (path, label), (sha, reason) in zip(candidates, checked, strict=True):
        if reason is None:
            files.append(ImageRecord(path, sha, label))
        else:
            skipped.append((path, reason))
    if strict and skipped:
        listing = "; ".join(f"{p}: {r}" for p, r in skipped[:10])
        more = f" ... ({len(skipped)} in all)" if len(skipped) > 10 else ""
        raise ValueError(f"{len(skipped)} unusable image file(s) in {root!r} (strict): {listing}{more}")
    return ImageFolderScan(os.path.abspath(os.fspath(root)), files, skipped, classes, source_digest(files))


def scan_image_folder(root, *, labels: bool = False, strict: bool = False, workers: int | None = None,
                      progress: bool = False) -> ImageFolderScan:
    """List, hash and check every PNG/JPEG/WebP below ``root``.

    Args:
        root: the image folder (walked recursively, symlinks followed, as ImageFolder does).
        labels: class labels from the first-level subfolders (ImageFolder's class indices);
            image files directly in ``root`` are then skipped.
        strict: raise instead of skipping unusable files.
        workers: threads for hashing and decoding (default ``min(8, cpu_count)``).
        progress: a tqdm bar over the files.
    Returns:
        :class:`ImageFolderScan` (it may hold zero files).
    Raises:
        FileNotFoundError: ``root`` is not a directory. ValueError: ``labels`` without
        subfolders, or under ``strict`` any unusable file (the message lists them).
    """
    root = os.path.abspath(os.fspath(root))
    candidates, classes, outside = list_image_files(root, labels=labels)
    checked = check_files(root, [p for p, _ in candidates], workers=workers, progress=progress)
    return assemble_scan(root, candidates, classes, outside, checked, strict=strict)
