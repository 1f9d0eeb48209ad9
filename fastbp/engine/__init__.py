"""The engine: a model lowered to a tape, and the drivers that walk it.

* :mod:`.graph` -- symbolic values (``fb.Input``), layer calls and node declarations;
* :mod:`.codes` -- node kinds, table columns and status codes;
* :mod:`.planner` -- the graph lowered to a tape, its arenas and workspaces;
* :mod:`.bundles` -- the named bundles the compiled entry points take;
* :mod:`.interpreter` -- the compiled CPU interpreter (gradients and update phases);
* :mod:`.layerwise` -- the per-layer path, for layers written in NumPy.
"""
