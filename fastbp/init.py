"""Weight initialisers (seed 003).

Each initialiser is ``f(shape, rng, dtype) -> array`` for a weight matrix of
shape ``(n_in, n_out)``: ``fan_in = n_in`` and ``fan_out = n_out``.

========================  =====================================================
name                      distribution
========================  =====================================================
``"he"``                  He/Kaiming normal, N(0, 2 / fan_in)
``"he_normal"``           the same
``"he_uniform"``          U[-sqrt(6 / fan_in), +sqrt(6 / fan_in)]
``"xavier_normal"``       Glorot normal, N(0, 2 / (fan_in + fan_out))
``"xavier_uniform"``      U[-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out))]
``"glorot_normal"``,      aliases of the two Xavier initialisers
``"glorot_uniform"``
``"lecun"``               LeCun normal, N(0, 1 / fan_in)
``"lecun_uniform"``       U[-sqrt(3 / fan_in), +sqrt(3 / fan_in)]
``"orthogonal"``          a (semi-)orthogonal matrix from the QR of a Gaussian one
``"zeros"``               all zeros
``normal(sigma)``         N(0, sigma^2), built with :func:`normal`
========================  =====================================================

The default of :class:`fastbp.layers.Dense` is ``"he"`` for the ReLU family
(``relu``, ``leaky_relu``), whose variance it keeps constant from layer to
layer (seed 002, figure 7.7), and ``"xavier_uniform"`` otherwise.
Biases start at zero.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

Initializer = Callable[[tuple, np.random.Generator, np.dtype], np.ndarray]


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"initialisers take a 2-d (n_in, n_out) shape, got {shape!r}")
    return int(shape[0]), int(shape[1])


def he_normal(shape, rng, dtype=np.float64):
    """He/Kaiming normal weights, N(0, 2 / fan_in) (``"he"``, ``"he_normal"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(shape, rng, dtype=np.float64):
    """He uniform weights, U[-sqrt(6 / fan_in), +sqrt(6 / fan_in)] (``"he_uniform"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape).astype(dtype)


def xavier_normal(shape, rng, dtype=np.float64):
    """Glorot/Xavier normal weights, N(0, 2 / (fan_in + fan_out)) (``"xavier_normal"``,
    ``"glorot_normal"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def xavier_uniform(shape, rng, dtype=np.float64):
    """Glorot/Xavier uniform weights, U[-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in +
    fan_out))] (``"xavier_uniform"``, ``"glorot_uniform"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def lecun_normal(shape, rng, dtype=np.float64):
    """LeCun normal weights, N(0, 1 / fan_in) (``"lecun"``, ``"lecun_normal"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)).astype(dtype)


def lecun_uniform(shape, rng, dtype=np.float64):
    """LeCun uniform weights, U[-sqrt(3 / fan_in), +sqrt(3 / fan_in)] (``"lecun_uniform"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    fan_in, _ = _fans(shape)
    limit = math.sqrt(3.0 / fan_in)
    return rng.uniform(-limit, limit, shape).astype(dtype)


def orthogonal(shape, rng, dtype=np.float64, gain: float = 1.0):
    """A (semi-)orthogonal matrix times ``gain``, from the QR decomposition of a Gaussian
    one with the signs fixed so that it is uniformly distributed (``"orthogonal"``).

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).
    gain : float
        The factor the orthogonal matrix is multiplied by.

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    n_in, n_out = _fans(shape)
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # makes the distribution uniform (Mezzadri 2007)
    if n_in < n_out:
        q = q.T
    return (gain * q[:n_in, :n_out]).astype(dtype)


def zeros(shape, rng=None, dtype=np.float64):
    """All zeros (``"zeros"``); ``rng`` is not used and may be None.

    Parameters
    ----------
    shape : (int, int)
        ``(n_in, n_out)``; fan_in = n_in, fan_out = n_out.
    rng : numpy.random.Generator
        The generator drawn from.
    dtype : numpy dtype
        The dtype of the result (float64 by default).

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    _fans(shape)
    return np.zeros(shape, dtype=dtype)


class normal:
    """N(0, sigma^2) weights: ``init=fb.init.normal(0.1)``.

    An instance is an initialiser ``f(shape, rng, dtype)``, saved in a model's config
    as ``{"normal": sigma}``.

    Parameters
    ----------
    sigma : float
        The standard deviation (finite, >= 0).
    """

    def __init__(self, sigma: float):
        sigma = float(sigma)
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"normal(sigma) needs a finite sigma >= 0, got {sigma!r}")
        self.sigma = sigma

    def __call__(self, shape, rng, dtype=np.float64):
        _fans(shape)
        return (rng.standard_normal(shape) * self.sigma).astype(dtype)

    def __repr__(self):
        return f"normal({self.sigma!r})"


INITIALIZERS: dict[str, Callable] = {
    "he": he_normal, "he_normal": he_normal, "he_uniform": he_uniform,
    "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal, "glorot_uniform": xavier_uniform,
    "lecun": lecun_normal, "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal, "zeros": zeros,
}


def default_for(activation: str | None) -> str:
    """The documented default initialiser name for an activation."""
    return "he" if activation in ("relu", "leaky_relu") else "xavier_uniform"


def get(init) -> Callable:
    """Resolve ``init``, an initialiser given by name (a key of ``INITIALIZERS``) or as a
    callable ``f(shape, rng, dtype)`` (returned as it is)."""
    if callable(init):
        return init
    if isinstance(init, str) and init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"unknown initialiser {init!r}; allowed: {sorted(INITIALIZERS)} or a "
                     f"callable f(shape, rng, dtype), such as fastbp.init.normal(sigma)")


def to_config(init) -> str | dict | None:
    """A JSON-able description of the initialiser ``init`` (for ``get_config``): its name,
    ``{"normal": sigma}``, or None for a callable of your own (which is not saved)."""
    if isinstance(init, str) or init is None:
        return init
    if isinstance(init, normal):
        return {"normal": init.sigma}
    name = getattr(init, "__name__", None)
    if name in INITIALIZERS:
        return name
    return None


def from_config(cfg):
    """The initialiser that ``cfg``, a value of :func:`to_config`, describes."""
    if isinstance(cfg, dict) and "normal" in cfg:
        return normal(cfg["normal"])
    return cfg
