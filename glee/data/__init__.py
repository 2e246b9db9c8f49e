"""glee.data: the synthetic "shapes" domain (design/demo-domain.md) and dataset readers.

- ``spec``: the domain's constants (shapes, category ids, colours, limits).
- ``geometry`` / ``render`` / ``scenes`` / ``videos``: exact shape geometry, painting, image scenes and
  videos, each a pure function of (seed, index).
- ``expressions``: referring expressions that identify exactly one object.
- ``prompts``: point / box / scribble prompts sampled from a mask, and their rasters.
- ``formats`` / ``writers``: COCO + RefCOCO refs and YouTube-VIS 2019 files, written in parallel.
- ``readers``: COCO and YouTube-VIS readers for training and evaluation.
- ``cli``: ``glee data synth images|videos``.

Nothing is imported here, so ``import glee.data.<module>`` pulls in only what that module needs.
"""
