"""Triton backend: the fused ops as Triton kernels for CUDA tensors (and, under
``TRITON_INTERPRET=1``, on CPU tensors through Triton's interpreter, which is how CI tests them).

Importing this package needs the ``triton`` package; :mod:`bldm_fast._backends` decides whether
the backend is available before importing it.
"""
