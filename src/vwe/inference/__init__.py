"""Inference maths shared by the per-image stages and `vwe predict`."""
