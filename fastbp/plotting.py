"""matplotlib for the few plots fastbp draws (extra ``fastbp[plot]``), off-screen."""
from __future__ import annotations

import os


def pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"plots need matplotlib: pip install 'fastbp[plot]' ({e})") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save(fig, path):
    """Save fig as a PNG atomically (no partial file), close it, return the path."""
    from .io import write_atomically
    import matplotlib.pyplot as plt
    path = os.fspath(path)
    try:
        write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110,
                                                     bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
