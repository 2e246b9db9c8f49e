"""Evaluation harness: metrics as pure functions and runners that drive the public predictor API.

Modules: ``coco`` (box / mask / colour-phrase AP), ``referring`` (REC accuracy, prompt mIoU),
``tracking`` (MOTA / IDF1 / HOTA via TrackEval), ``vos`` (DAVIS J&F), ``images`` / ``videos`` (runners),
``cli`` (``glee eval``). Nothing is imported here so that ``glee --help`` stays fast.
"""
