"""The reference: the training step's host side as it was before the host-step rework
(commit da96a8c), kept verbatim except for imports within this folder.

``bench_host_step.py`` times it side by side with the library, and the tests check the library
against it (same assignments, same losses within float rounding, same augmentation draws):
``targets`` (full-resolution bool masks per image), ``matcher`` and ``criterion`` (one solve
and one device-to-host copy per read-out, group and image), ``point_sampling``, ``colour``
(float64 HSV), ``transforms`` and ``dataset`` (the pseudo-index map resized twice, int64 labels).
Not part of the library; nothing in ``splitmatch`` imports it.
"""
