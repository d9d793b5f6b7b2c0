"""Datasets on disk: the VOC/SBD layout, the generated dataset, transforms and file I/O."""
