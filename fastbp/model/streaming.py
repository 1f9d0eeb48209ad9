"""Inputs larger than memory: file-backed arrays read a block of rows at a time.

An ``np.memmap`` (or ``np.load(path, mmap_mode="r")``, or a view of either) given to
``fit``, ``evaluate`` or ``predict`` is not converted whole.  Before training, its rows
are checked block by block (finite, ids in range, labels and weights as usual), so bad
input is still refused before any step.  Each compiled call then gathers the rows of
its minibatches, in the epoch's order, into a buffer of about ``BLOCK_BYTES``: the
engine sees the same rows in the same order as with an in-memory array, so the weights
come out the same bits.  As a gather goes, the pages it read are handed back to
the operating system (``madvise(MADV_DONTNEED)``; they stay in the page cache), so the
process's resident memory stays near one block and not the file's size.  A
copy-on-write mapping (``mode="c"``) keeps its pages (dropping them would drop the
user's private changes).
"""
from __future__ import annotations

import mmap

import numpy as np

#: About this many bytes of input rows are gathered per compiled call or checked per
#: block (a multiple of the minibatch in rows).
BLOCK_BYTES = 64 << 20


#: A gather from a mapped array reads its sorted rows in pieces that span at most this
#: many bytes of the file, and hands each piece's pages back before the next one (the
#: kernel maps the pages around each one read, so that a block's rows, spread over the
#: whole file, would otherwise map most of it).
SPAN_BYTES = 16 << 20


class _Mapping:
    """The mmap.mmap behind an array, and where the array's first element lies in it."""

    def __init__(self, mm, memmap):
        self.mm = mm
        self.keep = memmap.mode == "c"  # copy-on-write: dropping pages drops changes
        granularity = mmap.ALLOCATIONGRANULARITY
        self.base = memmap.ctypes.data - memmap.offset % granularity  # the map's address
        self.can = hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED")

    def release(self, lo=0, hi=None):
        """Hand the pages of bytes [lo, hi) of the map back (they stay in the page cache)."""
        if self.keep or not self.can:
            return
        size = len(self.mm)
        hi = size if hi is None else min(size, hi)
        lo = max(0, lo - lo % mmap.PAGESIZE)
        if hi > lo:
            self.mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _mapping(a):
    """The _Mapping of a file-backed array (an np.memmap or a view of one), else None."""
    memmap, seen = None, a
    while seen is not None:
        if isinstance(seen, np.memmap):  # the last one is the map's own (views come first)
            memmap = seen
        if isinstance(seen, mmap.mmap):
            return _Mapping(seen, memmap) if memmap is not None else None
        seen = getattr(seen, "base", None)
    return None


def file_backed(parts) -> bool:
    """True when one of the arrays is a memory-mapped file (or a view of one)."""
    return any(isinstance(p, np.ndarray) and _mapping(p) is not None for p in parts)


def gather(a, rows, mapping=None):
    """a[rows] in memory: rows a slice, or int64 indices in any order (read from the file
    in ascending order, placed in the given one).  With a's _Mapping, the pages read
    are handed back as the gather goes."""
    if isinstance(rows, slice):
        out = np.array(a[rows])
        if mapping is not None:
            mapping.release()
        return out
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.shape[0],) + a.shape[1:], dtype=a.dtype)
    if mapping is None or a.ndim == 0 or rows.shape[0] == 0:
        out[order] = a[rows[order]]
        return out
    ordered = rows[order]
    stride = abs(a.strides[0]) or 1
    span = max(1, SPAN_BYTES // stride)  # rows of the file per piece
    first = a.ctypes.data - mapping.base  # byte offset of row 0 in the map
    cuts = np.searchsorted(ordered, np.arange(0, a.shape[0] + span, span))
    for i0, i1 in zip(cuts[:-1], cuts[1:]):
        if i1 > i0:
            out[order[i0:i1]] = a[ordered[i0:i1]]
            lo, hi = sorted((first + int(ordered[i0]) * a.strides[0],
                             first + (int(ordered[i1 - 1]) + 1) * a.strides[0]))
            mapping.release(lo - stride, hi + stride)
    return out


class Stream:
    """fit's / evaluate's inputs, targets and weights, turned into the engine's Data a
    block of rows at a time (see the module's docstring).

    parts : the model's inputs in ``inputs`` order (file-backed or in memory); y, the
    targets; sample_weight / class_weight as fit takes them; names: the labels of X and
    y in messages.
    """

    def __init__(self, model, parts, y, sample_weight=None, class_weight=None,
                 names=("X", "y")):
        self.model = model
        self.parts = [p if isinstance(p, np.ndarray) else np.asarray(p) for p in parts]
        self.y = y if isinstance(y, np.ndarray) else np.asarray(y)
        self.sample_weight = (None if sample_weight is None
                              else np.asarray(sample_weight))
        self.class_weight = class_weight
        self.names = names
        self.n = int(self.parts[0].shape[0]) if self.parts[0].ndim else 0
        row_bytes = sum(p.dtype.itemsize * int(np.prod(p.shape[1:])) for p in self.parts)
        self.block_rows = max(1, BLOCK_BYTES // max(row_bytes, 1))
        self.maps = [_mapping(a) for a in self.parts + [self.y]]
        self.steps = 1

    def data(self, rows):
        """The engine's Data bundle of ``rows`` (a slice or int64 indices)."""
        parts = [gather(p, rows, m) for p, m in zip(self.parts, self.maps)]
        y = gather(self.y, rows, self.maps[-1])
        w = None if self.sample_weight is None else gather(self.sample_weight, rows)
        data, _ = self.model._data(parts, y, self.names[0], self.names[1], w,
                                   self.class_weight)
        return data

    def blocks(self, multiple=1):
        """(start, stop) of consecutive blocks of about ``block_rows`` rows, each a
        multiple of ``multiple`` rows (the last one excepted)."""
        size = max(multiple, self.block_rows // multiple * multiple)
        return [(a, min(self.n, a + size)) for a in range(0, self.n, size)]

    def check(self):
        """Every row validated, a block at a time, before any step; a refusal names the
        block's rows (the index in the message counts from the block's first row)."""
        X, Y = self.names
        rows = [int(p.shape[0]) if p.ndim else 0 for p in self.parts]
        if len(set(rows)) != 1:
            raise ValueError(f"inputs must have the same number of rows, got {rows} (in "
                             f"inputs order)")
        if self.n == 0:
            raise ValueError(f"{X} is empty (shape {self.parts[0].shape}); at least one "
                             f"sample is needed")
        n_y = int(self.y.shape[0]) if self.y.ndim else 0
        if n_y != self.n:
            raise ValueError(f"{Y} has {n_y} rows; {X} has {self.n}")
        if self.sample_weight is not None and self.sample_weight.shape != (self.n,):
            from .._validation import check_sample_weight
            check_sample_weight("sample_weight", self.sample_weight, self.n)
        for a, b in self.blocks():
            try:
                self.data(slice(a, b))
            except (ValueError, TypeError) as e:
                raise type(e)(f"{e}, counted from row {a} (the block of rows {a} to {b - 1} of "
                               f"the memory-mapped input)") from None

