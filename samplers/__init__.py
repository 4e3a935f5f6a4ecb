"""Pure-torch long-video sampling algorithms.

Nothing in this package imports ComfyUI or touches files: every function works on explicit
tensors and explicit per-frame noise levels, so it can be tested against models whose right
answer is known.
"""
