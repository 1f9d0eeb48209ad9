"""Private compiled kernels: module-level ``@njit`` functions of arrays and scalars.

Nothing in here validates input; the public API converts and checks arrays
before a kernel sees them.
"""
