"""Number formats shared by the report's page and figures and the demo's table (no plotting imports)."""

from __future__ import annotations

import math


def fmt_gflops(x: float | None, digits: int = 3) -> str:
    """GFLOPs with ``digits`` significant digits and no exponent: 0.0412, 4.11, 41.1, 411, 4110 (small models
    must not all read "0.04")."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    if float(text) != 0 and math.floor(math.log10(abs(float(text)))) > math.floor(math.log10(abs(x))):
        text = f"{x:.{max(0, decimals - 1)}f}"  # 9.996 -> "10.0", not "10.00"
    return text


def fmt_percent(fraction: float | None, decimals: int = 0) -> str:
    """A fraction as a percentage (``0.234`` -> ``23%``), never "-0%"."""
    if fraction is None or not math.isfinite(fraction):
        return "–"
    value = round(100.0 * fraction, decimals)
    return f"{0.0 if value == 0 else value:.{decimals}f}%"
