"""vwe: Visual Words for weakly-supervised semantic segmentation (VWE, IJCAI 2021; VWL, IJCV 2022)."""

__version__ = "0.1.0"
