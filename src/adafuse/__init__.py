"""adafuse: efficient video action recognition with adaptive temporal fusion (AdaFuse, ICLR 2021)."""

__version__ = "0.1.0"
