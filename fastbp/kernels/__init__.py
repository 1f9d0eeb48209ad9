"""Private compiled kernels: module-level ``@njit`` functions of arrays and scalars.

Nothing in here validates input; the public API converts and checks arrays
before a kernel sees them.

Calling them from your own ``@njit(cache=True)`` function: start numba's thread
pool (``numba.get_num_threads()``) before that function is first called in a
process.  Its cached code links against the pool's scheduling functions, which
numba registers only when the pool starts; loaded earlier, the calls are null and
the process segfaults (numba/numba#8578).  fastbp does not start the pool on
import: a pool started before ``import torch`` makes PyTorch's own OpenMP threads
several times slower (a batch-32 MLP step: 0.5 ms against 3.5 ms).
"""
