"""Experiments made of runs (`vwe ablate`, `vwe sweep`): above the stages, they drive the
pipeline."""
