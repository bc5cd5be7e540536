"""Files every part of splitmatch writes and reads back: safe writes and checkpoint files.

``files``: atomic writes (a reader never sees half a file), JSON records, output checks made
before a command computes. ``checkpoint``: the safetensors checkpoint format.
"""
