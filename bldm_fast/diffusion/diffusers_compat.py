"""Optional diffusers glue: the real mixins when ``diffusers`` is installed, small stand-ins otherwise.

``pip install bldm_fast[diffusers]`` makes :class:`~bldm_fast.BernoulliScheduler` a
``diffusers.SchedulerMixin`` + ``ConfigMixin`` (so ``DiffusionPipeline.save_pretrained`` /
``from_pretrained`` handle it) and its step results ``diffusers.utils.BaseOutput``s. Without
diffusers (or with ``BLDM_FAST_NO_DIFFUSERS=1``) the stand-ins below give the same calls on local
folders: ``config`` as a frozen dict with attribute access, ``register_to_config``,
``save_pretrained`` / ``from_pretrained(path, subfolder=...)``, results indexable by position
and name.

A diffusers that is installed but fails to import falls back to the stand-ins with one warning
that carries the real error.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

__all__ = ["DIFFUSERS_AVAILABLE", "BaseOutput", "ConfigMixin", "FrozenDict", "SchedulerMixin", "require_diffusers"]

_DISABLE_ENV = "BLDM_FAST_NO_DIFFUSERS"
_IMPORT_ERROR: str | None = None


class _FrozenDict(dict):
    """A dict that refuses changes after construction, keys readable as attributes (diffusers' FrozenDict)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _frozen(self, *args, **kwargs):
        raise TypeError(f"a {type(self).__name__} cannot be changed; build a new object from a changed copy")

    __setitem__ = __delitem__ = __setattr__ = setdefault = pop = popitem = update = clear = _frozen

    def __reduce__(self):  # pickle/deepcopy rebuild through __init__, not item by item
        return type(self), (dict(self),)


class _BaseOutput:
    """Base of the dataclass results: ``out[0]`` / ``out["name"]`` / ``out.to_tuple()`` as diffusers'
    ``BaseOutput`` (positions count only the fields that are not None)."""

    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in {f.name for f in dataclasses.fields(self)} or getattr(self, key) is None:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]


class _ConfigMixin:
    """``config`` (a frozen dict) set by ``register_to_config(**kwargs)``, like diffusers' ConfigMixin."""

    config_name: str | None = None

    def register_to_config(self, **kwargs) -> None:
        if self.config_name is None:
            raise NotImplementedError(f"{type(self).__name__} must define config_name")
        self._internal_dict = _FrozenDict({**getattr(self, "_internal_dict", {}), **kwargs})

    @property
    def config(self) -> _FrozenDict:
        return self._internal_dict


class _SchedulerMixin:
    """``save_pretrained`` / ``from_pretrained(path, subfolder=None)`` on local folders; the class
    provides ``save_config`` and ``from_config``."""

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> None:
        if push_to_hub:
            raise ValueError("push_to_hub needs diffusers (pip install bldm_fast[diffusers])")
        self.save_config(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, subfolder: str | None = None,
                        return_unused_kwargs: bool = False, **kwargs):
        if pretrained_model_name_or_path is None:
            raise ValueError("pretrained_model_name_or_path is required (a folder holding "
                             f"{cls.config_name})")
        path = os.fspath(pretrained_model_name_or_path)
        if subfolder:
            path = os.path.join(path, subfolder)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path!r} is not a folder (without diffusers only local folders load; "
                                    "pip install bldm_fast[diffusers] for the Hub)")
        return cls.from_config(path, return_unused_kwargs=return_unused_kwargs)


def _load():
    global _IMPORT_ERROR
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        _IMPORT_ERROR = f"{_DISABLE_ENV} is set"
        return None
    try:
        from diffusers.configuration_utils import ConfigMixin, FrozenDict
        from diffusers.schedulers.scheduling_utils import SchedulerMixin
        from diffusers.utils import BaseOutput
    except ImportError as exc:  # not installed: the stand-ins, silently
        _IMPORT_ERROR = f"diffusers is not installed ({exc})"
        return None
    except Exception as exc:  # installed but broken: say why, then work without it
        _IMPORT_ERROR = f"diffusers failed to import ({type(exc).__name__}: {exc})"
        warnings.warn(f"bldm_fast: {_IMPORT_ERROR}; BernoulliScheduler works without its mixins", stacklevel=3)
        return None
    return ConfigMixin, FrozenDict, SchedulerMixin, BaseOutput


_real = _load()
DIFFUSERS_AVAILABLE = _real is not None
if _real is not None:
    ConfigMixin, FrozenDict, SchedulerMixin, BaseOutput = _real
else:
    ConfigMixin, FrozenDict, SchedulerMixin, BaseOutput = _ConfigMixin, _FrozenDict, _SchedulerMixin, _BaseOutput


def require_diffusers(what: str) -> None:
    """Raise ImportError naming ``what`` and the extra to install when diffusers is not usable."""
    if not DIFFUSERS_AVAILABLE:
        raise ImportError(f"{what} needs diffusers: pip install 'bldm_fast[diffusers]' ({_IMPORT_ERROR})")
