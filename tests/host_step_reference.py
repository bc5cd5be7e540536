"""The training step's host side before its rework, for tests.

It lives with the benchmark that measures against it (``benchmarks/reference_host_step``);
this module puts that folder on the import path once.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

reference_targets = importlib.import_module("reference_host_step.targets")
reference_matcher = importlib.import_module("reference_host_step.matcher")
reference_criterion = importlib.import_module("reference_host_step.criterion")
reference_colour = importlib.import_module("reference_host_step.colour")
reference_transforms = importlib.import_module("reference_host_step.transforms")
reference_dataset = importlib.import_module("reference_host_step.dataset")
