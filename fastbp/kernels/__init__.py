"""Private compiled kernels: module-level ``@njit`` functions of arrays and scalars.

Nothing in here validates input; the public API converts and checks arrays
before a kernel sees them.
"""

import numba

# Start numba's thread pool now.  Code compiled by a plain @njit(cache=True) caller of
# these (partly parallel) kernels and then loaded from numba's cache links against the
# pool's scheduling functions, which are registered only when the pool starts; loaded
# before that, the calls are null and the process segfaults (numba/numba#8578).
numba.get_num_threads()
