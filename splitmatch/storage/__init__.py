"""The ground floor: files every part of splitmatch writes and reads back, and content digests.

``files``: atomic writes (a reader never sees half a file), JSON records read and written,
output checks made before a command computes, stale temporaries cleared. ``digest``: SHA-256
over tensors, as checkpoints record it and pseudo-mask caches key on it. Nothing here imports
the rest of splitmatch; the checkpoint format stands beside the model it stores
(:mod:`splitmatch.model.checkpoint`).
"""
