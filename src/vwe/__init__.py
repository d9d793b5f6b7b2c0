"""vwe: Visual Words for weakly-supervised semantic segmentation (VWE 2021, VWL 2022)."""

__version__ = "0.1.0"
