"""dropverify: certify dropout-family layers against their contracts, with stated error rates."""
from __future__ import annotations

from .contracts import Contract, ParamSpec, all_contracts, get_contract
from .errors import CheckFailed, DropverifyError, InvalidArgument, TargetUnavailable

__version__ = "0.1.0"

__all__ = [
    "CheckFailed", "Contract", "DropverifyError", "InvalidArgument", "ParamSpec",
    "TargetUnavailable", "all_contracts", "get_contract", "__version__",
]
