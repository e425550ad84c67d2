"""Model zoo: SurvPGC and the baselines of the paper behind one registry.

``create_model(name, **config)`` builds any registered model; ``list_models()`` lists them. Models are
discovered from the modules of this package on first use, so importing ``survpgc.models`` is cheap.
"""

from survpgc.models.registry import create_model, get_model_spec, list_models

__all__ = ["create_model", "get_model_spec", "list_models"]
