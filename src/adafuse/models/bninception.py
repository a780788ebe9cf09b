"""(Being written.) Registry entries of this module go into ``MODELS``; ``registry.py`` merges them."""

from __future__ import annotations

from collections.abc import Callable

MODELS: dict[str, Callable] = {}
