"""Tensor operations for component authors: position helpers, seeded sampling, the fast dropout
and the fused full-softmax loss. Imported through :mod:`eclsr.api`.
"""
