"""Sample quality of the bundled digits model: a fixed, deterministic classifier of the built-in images.

The classifier is an RBF support-vector machine with Platt-scaled probabilities
(``sklearn.svm.SVC(probability=True, random_state=0)``, default ``C`` and ``gamma``) trained on a
fixed 70% of the built-in image set (scikit-learn's 1797 digits as the demo encodes them:
16x16, ink = 1; ``train_test_split(test_size=0.3, random_state=0)``). It is trained at first use
(about a second) and kept in memory. The other 30% (540 images) are the held-out real digits
every score is reported beside.

For a set of images, :func:`digit_quality` reports

* ``confident``: the fraction whose largest class probability exceeds 0.9 (a readable digit);
* ``mean_max_prob``: the mean of the largest class probability;
* ``class_tv``: the total-variation distance ``0.5 * sum |h_c - 0.1|`` between the histogram of
  predicted classes and the uniform one (0 = every digit equally often; 0.9 = one digit only):
  mode coverage; ``classes_covered``: how many of the 10 digits were predicted at least once.

:func:`real_digit_quality` gives the same numbers on held-out real digits, :func:`quality_report`
both side by side with the ratio of the confident fractions.

On scikit-learn versions without ``SVC(probability=...)`` (announced for 1.11) the same SVC is
calibrated with ``CalibratedClassifierCV(..., ensemble=False)`` (sigmoid); the numbers then differ
slightly and the ``classifier`` field of every result says which one was used.
"""

from __future__ import annotations

import functools
import warnings

from .demo.data import IMAGE_SIZE, load_digit_images

#: a sample is "confident" when the classifier's largest class probability exceeds this
CONFIDENT_THRESHOLD = 0.9
#: the fraction of the built-in digits held out from the classifier (and the split's seed)
TEST_FRACTION = 0.3
SPLIT_SEED = 0
#: ``random_state`` of the SVC (its Platt scaling draws internal cross-validation folds)
CLASSIFIER_SEED = 0
NUM_CLASSES = 10


def _platt_supported() -> bool:
    from sklearn.svm import SVC

    return "probability" in SVC().get_params()


def _build_classifier(platt: bool):
    """The unfitted classifier and its name: ``SVC(probability=True)`` when ``platt``, else the
    same SVC calibrated by ``CalibratedClassifierCV(ensemble=False)``."""
    from sklearn.svm import SVC

    if platt:
        return SVC(probability=True, random_state=CLASSIFIER_SEED), "SVC(rbf, probability=True, random_state=0)"
    from sklearn.calibration import CalibratedClassifierCV

    return (CalibratedClassifierCV(SVC(random_state=CLASSIFIER_SEED), ensemble=False),
            "CalibratedClassifierCV(SVC(rbf, random_state=0), ensemble=False)")


@functools.lru_cache(maxsize=2)
def _fitted(platt: bool | None = None):
    """``(classifier, name, held-out images (540, 256) float32, held-out labels (540,))``, trained once."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    images, labels = load_digit_images()
    x = images.flatten(1).numpy().astype(np.float64)
    y = labels.numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED)
    clf, name = _build_classifier(_platt_supported() if platt is None else platt)
    with warnings.catch_warnings():  # scikit-learn 1.9-1.10 announce the removal of probability=True
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(x_train, y_train)
    return clf, name, x_test, y_test


def _as_flat_images(images, side: int):
    """``images`` as float64 numpy ``(N, side * side)``; raises as :func:`digit_quality`."""
    import numpy as np
    import torch

    if isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        arr = images.detach().to("cpu", torch.float64).numpy()
    elif isinstance(images, np.ndarray):
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        arr = images.astype(np.float64)
    else:
        raise TypeError(f"images must be a torch.Tensor or numpy.ndarray, got {type(images).__name__}")
    shape = tuple(arr.shape)
    if arr.ndim == 4 and shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[1:] != (side, side) or arr.shape[0] < 1:
        raise ValueError(f"images must have shape (N, 1, {side}, {side}) or (N, {side}, {side}) with N >= 1 "
                         f"(the built-in digits' size), got {shape}")
    if not np.isfinite(arr).all():
        raise ValueError("images hold NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"images must lie in [0, 1] (ink = 1), got values in [{arr.min():.4g}, {arr.max():.4g}]")
    return arr.reshape(arr.shape[0], -1)


def _scores(clf, name: str, x, threshold: float) -> dict:
    import numpy as np

    probs = clf.predict_proba(x)
    top = probs.max(1)
    pred = clf.classes_[probs.argmax(1)]
    hist = np.bincount(pred, minlength=NUM_CLASSES)
    freq = hist / hist.sum()
    return dict(n=int(x.shape[0]), confident=float((top > threshold).mean()), mean_max_prob=float(top.mean()),
                class_tv=float(0.5 * np.abs(freq - 1.0 / NUM_CLASSES).sum()),
                classes_covered=int((hist > 0).sum()), histogram=[int(v) for v in hist],
                threshold=float(threshold), classifier=name)


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    return float(threshold)


def digit_quality(images, *, threshold: float = CONFIDENT_THRESHOLD) -> dict:
    """The quality scores of generated (or any) 16x16 digit images.

    Args:
        images: float ``(N, 1, 16, 16)`` or ``(N, 16, 16)`` in [0, 1], ink = 1 (what
            ``bldm_fast.demo.demo.decode_codes`` returns for the bundled model), a torch tensor
            (any device) or a numpy array; ``N >= 1``.
        threshold: a sample is confident when its largest class probability exceeds it.

    Returns:
        dict: ``n``, ``confident`` (fraction), ``mean_max_prob``, ``class_tv`` (total-variation
        distance of the predicted-class histogram from uniform, in [0, 0.9]), ``classes_covered``
        (0..10), ``histogram`` (10 ints: predicted digits 0..9), ``threshold``, ``classifier``.

    Raises:
        TypeError: not a tensor/array, or not floating point.
        ValueError: another shape, N = 0, NaN/inf or values outside [0, 1], a threshold outside [0, 1).
        ImportError: scikit-learn is missing.
    """
    threshold = _check_threshold(threshold)
    x = _as_flat_images(images, IMAGE_SIZE)
    clf, name, _, _ = _fitted()
    return _scores(clf, name, x, threshold)


def real_digit_quality(n: int | None = None, *, threshold: float = CONFIDENT_THRESHOLD) -> dict:
    """The scores of :func:`digit_quality` on held-out real digits (never seen by the classifier):
    the first ``n`` of the 540 (a random subset: the split shuffles), all 540 when ``n`` is None;
    plus ``accuracy``, the fraction classified as their true label.

    Raises:
        ValueError: ``n`` not an int in 1..540; a bad threshold.
    """
    threshold = _check_threshold(threshold)
    clf, name, x_test, y_test = _fitted()
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(y_test)):
        raise ValueError(f"n must be None or an int in 1..{len(y_test)} (the held-out digits), got {n!r}")
    x, y = x_test[:n], y_test[:n]
    res = _scores(clf, name, x, threshold)
    res["accuracy"] = float((clf.predict(x) == y).mean())
    return res


def quality_report(images, *, threshold: float = CONFIDENT_THRESHOLD) -> dict:
    """``{"samples": digit_quality(images), "real": real_digit_quality(m), "confident_ratio": ...}``
    with ``m = min(N, 540)`` (the same number of real digits, so the histogram distances compare:
    a small uniform sample is not exactly uniform either) and the ratio of the confident fractions
    (samples / real). Raises as :func:`digit_quality`."""
    samples = digit_quality(images, threshold=threshold)
    _, _, x_test, _ = _fitted()
    real = real_digit_quality(min(samples["n"], len(x_test)), threshold=threshold)
    return dict(samples=samples, real=real, confident_ratio=samples["confident"] / max(real["confident"], 1e-12))


def format_quality(report: dict) -> list[str]:
    """The lines of a :func:`quality_report` as a small table (samples, real digits, ratio)."""
    s, r = report["samples"], report["real"]
    return [
        f"{'quality (digit classifier)':34}{'samples':>12}{'real digits':>12}{'ratio':>10}",
        f"{'confident (max prob > ' + format(s['threshold'], 'g') + ')':34}{s['confident']:>12.3f}"
        f"{r['confident']:>12.3f}{report['confident_ratio']:>9.2f}x",
        f"{'mean max probability':34}{s['mean_max_prob']:>12.3f}{r['mean_max_prob']:>12.3f}",
        f"{'class histogram distance (TV)':34}{s['class_tv']:>12.3f}{r['class_tv']:>12.3f}",
        f"{'digits covered (of 10)':34}{s['classes_covered']:>12}{r['classes_covered']:>12}",
        f"  ({s['n']} samples vs {r['n']} held-out real digits; {s['classifier']} on 70% of the built-in digits)",
    ]
