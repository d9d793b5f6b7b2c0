"""Refinement: IRNet's path index, random walk, dense CRF and IR labels (irn.md §4–§6)."""

from vwe.refine.ir_label import ir_label
from vwe.refine.random_walk import random_walk

__all__ = ["ir_label", "random_walk"]
