"""pytest plugin (entry point ``pytest11``): import-light; heavy modules load on use."""
from __future__ import annotations
