"""Registry of survival models by name.

Each model module registers its classes with :func:`register_model`; the registry imports every module
of ``survpgc.models`` on first use (no central list to keep in sync), so a new model is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survpgc.errors import ConfigError, UnknownNameError

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "model_accepts", "register_model"]

_NOT_MODEL_MODULES = {"registry", "base", "layers", "heads"}

#: Keyword arguments describing the inputs (feature dims, token counts). ``create_model`` passes them only
#: to models that accept them, so one config can describe the data for every model.
INPUT_KWARGS = frozenset({"path_dim", "clin_dim", "gen_dim", "n_clin_tokens", "n_gen_tokens"})


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model."""

    name: str
    description: str
    modalities: tuple[str, ...]  # required input modalities ("pathology", "clinical", "genomic")
    factory: Callable[..., Any]
    neural: bool = True  # False for models fitted in closed form (e.g. the Cox baseline)
    optional_modalities: tuple[str, ...] = ()


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED = False


def register_model(
    name: str,
    description: str,
    modalities: tuple[str, ...],
    *,
    neural: bool = True,
    optional_modalities: tuple[str, ...] = (),
) -> Callable[[Any], Any]:
    """Class decorator: ``@register_model("abmil", "gated attention MIL", ("pathology",))``."""

    def wrap(cls: Any) -> Any:
        if name in _REGISTRY and _REGISTRY[name].factory is not cls:
            raise ConfigError(f"model name {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, description, tuple(modalities), cls, neural, tuple(optional_modalities))
        cls.model_name = name
        cls.modalities = tuple(modalities)
        cls.optional_modalities = tuple(optional_modalities)
        return cls

    return wrap


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    here = Path(__file__).parent  # the models package, found without importing it (no import cycle)
    for info in pkgutil.iter_modules([str(here)]):
        if info.name not in _NOT_MODEL_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    _LOADED = True


def list_models() -> list[ModelSpec]:
    """All registered models, sorted by name."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_model_spec(name: str) -> ModelSpec:
    """The spec of one model; an unknown name raises :class:`~survpgc.errors.UnknownNameError` (a
    :class:`ConfigError`) naming close matches and every known model."""
    _load_all()
    key = name.lower()
    if key not in _REGISTRY:
        raise UnknownNameError("model", name, list(_REGISTRY))
    return _REGISTRY[key]


def create_model(name: str, **config: Any) -> Any:
    """Build a registered model: ``create_model("survpgc", path_dim=1024, n_bins=4)``.

    Input-description arguments (:data:`INPUT_KWARGS`) a model does not take are dropped; any other
    unknown keyword argument raises :class:`ConfigError` naming the model and its accepted arguments.
    """

    spec = get_model_spec(name)
    accepted = _accepted_kwargs(spec.factory)
    if accepted is not None:
        # input dims are passed to every model by configs; a model that has no use for one ignores it
        config = {k: v for k, v in config.items() if k in accepted or k not in INPUT_KWARGS}
        unknown = set(config) - accepted
        if unknown:
            raise ConfigError(f"model {name!r} does not accept {sorted(unknown)}; its arguments: {sorted(accepted)}")
    return spec.factory(**config)


def model_accepts(name: str, argument: str) -> bool:
    """Whether ``create_model(name, argument=...)`` is accepted (e.g. ``groups`` for per-pathway encoders)."""
    accepted = _accepted_kwargs(get_model_spec(name).factory)
    return accepted is None or argument in accepted


def _accepted_kwargs(factory: Any) -> set[str] | None:
    """Keyword arguments a class accepts, following ``**kwargs`` up the MRO to the ``__init__`` that
    finally names them; None when some ``__init__`` forwards ``**kwargs`` to something opaque."""
    import inspect

    classes = factory.__mro__ if isinstance(factory, type) else (factory,)
    names: set[str] = set()
    for cls in classes:
        fn = cls.__init__ if isinstance(factory, type) else cls
        params = inspect.signature(fn).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
    return None
