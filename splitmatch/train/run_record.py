"""What every run folder holds: resolved config, environment, the classes it saw, and a metrics log (JSON lines)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from splitmatch.config import ExperimentConfig, save_yaml
from splitmatch.storage.files import append_text, atomic_write_bytes, json_ready, write_json
from splitmatch.train.run_folder import read_metrics

SPLIT_FILE = "split.json"
PACKAGES = ("splitmatch", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "Pillow", "safetensors")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision() -> str:
    """The source tree's commit (with ``+dirty`` when it has changes), or ``unknown``."""
    source = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=source, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def compute_environment() -> dict:
    """What moves float results between machines: the CPU, the kernels torch picks for it, threads,
    OpenMP's wait policy, the GPU. Runs are bitwise repeatable only where all of these agree."""
    import os

    import torch

    environment = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cuda": None,
    }
    if torch.cuda.is_available():
        environment["cuda"] = {
            "device": torch.cuda.get_device_name(),
            "devices": torch.cuda.device_count(),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
        }
    return environment


class RunRecord:
    """Writes a run's records into its folder (only on the main process when ``active``).

    Args:
        directory: the run folder.
        config: the resolved config, saved as ``config.yaml``.
        active: ``False`` on other ranks: nothing is written.
        split: saved as ``split.json``: the classes training sees (seen and unseen) and, for a
            proxy run, the proxy (held-out classes, validation images), or ``None`` for a benchmark
            run (:meth:`splitmatch.data.experiment_folder.ExperimentFolder.record`).
    """

    def __init__(
        self, directory: str | Path, config: ExperimentConfig, active: bool = True, split: dict | None = None
    ) -> None:
        self.directory = Path(directory)
        self.active = active
        self.metrics_path = self.directory / "metrics.jsonl"
        self.tensorboard = None
        if not active:
            return
        if config.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from splitmatch.config import ConfigError
                from splitmatch.packaged import install_hint

                raise ConfigError(f"train.tensorboard=true needs TensorBoard: {install_hint('tensorboard')}") from None
            self.tensorboard = SummaryWriter(str(self.directory / "tensorboard"))
        self.directory.mkdir(parents=True, exist_ok=True)
        save_yaml(config, self.directory / "config.yaml")
        if split is not None:
            write_json(self.directory / SPLIT_FILE, split)
        write_json(
            self.directory / "environment.json",
            {
                "seed": config.train.seed,
                "versions": package_versions(),
                "git_revision": git_revision(),
                "command": sys.argv,
                "platform": platform.platform(),
                "compute": compute_environment(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    def truncate_after(self, step: int) -> None:
        """On resume, drops log lines of steps the resumed run will redo, and a torn last line."""
        if not self.active or not self.metrics_path.is_file():
            return
        kept = [raw for raw, entry in read_metrics(self.metrics_path) if entry.get("step", 0) <= step]
        atomic_write_bytes(self.metrics_path, b"".join(raw + b"\n" for raw in kept))

    def log(self, entry: dict) -> None:
        """Appends one JSON line to ``metrics.jsonl``."""
        if not self.active:
            return
        append_text(self.metrics_path, json.dumps(json_ready(entry)) + "\n")
        if self.tensorboard is not None:
            step = entry.get("step", 0)
            scalars = {k: v for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
            scalars.update({f"eval/{k}": v for k, v in entry.get("eval", {}).items() if isinstance(v, float)})
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()

    def write(self, name: str, data) -> None:
        if self.active:
            write_json(self.directory / name, data)
