"""Spinal and pelvic parameters from label maps (pure functions of mask + affine)."""
