"""survpgc -- multimodal cancer survival prediction (SurvPGC and its baselines).

Importing the package is cheap: torch, encoders and plotting libraries load only when used.
"""

from survpgc.errors import SurvpgcError

__version__ = "0.1.0"
__all__ = ["SurvpgcError", "__version__"]
