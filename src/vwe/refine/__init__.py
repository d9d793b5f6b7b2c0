"""Refinement: IRNet's path index, random walk, dense CRF and IR labels (docs/refinement.md)."""

from vwe.refine.ir_label import ir_label
from vwe.refine.random_walk import random_walk

__all__ = ["ir_label", "random_walk"]
