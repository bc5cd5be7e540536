"""Evaluation under the zero-shot protocol: per-class IoU over a split, S / U / hIoU, by name.

* :mod:`~splitmatch.evaluation.evaluator`: a model or prediction PNGs scored on a dataset split;
* :mod:`~splitmatch.evaluation.metrics`: confusion matrices, mIoU(S), mIoU(U), hIoU, tables.
"""
