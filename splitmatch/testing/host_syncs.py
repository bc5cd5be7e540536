"""Host synchronisations and host-to-device traffic of code written for a GPU, counted on the CPU.

On the CPU a ``.cpu()`` or ``.item()`` costs nothing and a GPU's synchronisations are invisible.
:class:`EmulatedDevice` makes them visible: inside it, ``device`` (a stand-in device, ``meta``)
holds real CPU data wrapped in a tensor subclass, and a ``TorchDispatchMode`` runs every aten
op on that data while counting what would make the host wait for a GPU:

* ``aten._local_scalar_dense`` on a device tensor (``.item()``, ``int(t)``, ``if t:``);
* device-to-host copies (``.cpu()``, ``.to("cpu")``, ``tolist``);
* ops whose output size depends on device data (``nonzero``, boolean-mask indexing,
  ``unique``, ``masked_select``, ``bincount``, ``repeat_interleave`` without ``output_size``,
  ``equal``, ``is_nonzero``).

Host-to-device copies are counted with their bytes (explicit ``.to(device)`` and index tensors
that indexing would copy). An op that mixes host and device tensors, which CUDA refuses, raises
here too. Code under test runs unchanged: it asks for ``device`` as it would for ``cuda``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
DEVICE = torch.device("meta")
HOST = torch.device("cpu")

# Ops whose output size is only known once device data has been read.
DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
    aten.equal.default,
    aten.is_nonzero.default,
    aten.repeat_interleave.Tensor,
}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


@dataclass
class Counts:
    """What the emulated device saw: host synchronisations by cause, and host-to-device copies."""

    syncs: dict[str, int] = field(default_factory=dict)
    h2d_copies: int = 0
    h2d_bytes: int = 0
    h2d_ops: dict[str, int] = field(default_factory=dict)

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())

    def sync(self, cause: str) -> None:
        self.syncs[cause] = self.syncs.get(cause, 0) + 1

    def copy_in(self, source: torch.Tensor, cause: str) -> None:
        self.h2d_copies += 1
        self.h2d_bytes += source.numel() * source.element_size()
        self.h2d_ops[cause] = self.h2d_ops.get(cause, 0) + 1


class DeviceTensor(torch.Tensor):
    """A tensor that says it lives on :data:`DEVICE` and holds its values in a CPU tensor."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls,
            inner.shape,
            strides=inner.stride(),
            storage_offset=inner.storage_offset(),
            dtype=inner.dtype,
            device=DEVICE,
            requires_grad=inner.requires_grad,
        )

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"DeviceTensor({self.inner!r})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist:  # read on the host: a device-to-host copy, as on a GPU
            if _counts:
                _counts[-1].sync("device-to-host copy")
            return args[0].inner.tolist()
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise TypeError("can't convert a device tensor to numpy; copy it to the host first (.cpu())")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Reached without the mode in autograd's device threads (backward of device tensors).
        return _run(func, args, kwargs or {})


_counts: list[Counts] = []


def _on_device(value) -> bool:
    return isinstance(value, DeviceTensor)


def _is_host_array(value) -> bool:
    return isinstance(value, torch.Tensor) and not isinstance(value, DeviceTensor) and value.dim() > 0


def _run(func, args, kwargs):
    counts = _counts[-1] if _counts else Counts()
    flat_args = tree_flatten((args, kwargs))[0]
    device_inputs = any(_on_device(a) for a in flat_args)
    asked = kwargs.get("device")
    to_device = asked is not None and torch.device(asked) == DEVICE
    if to_device:
        kwargs = dict(kwargs, device=HOST)
    inner_args, inner_kwargs = tree_map(lambda a: a.inner if _on_device(a) else a, (args, kwargs))

    if func is aten._to_copy.default and asked is not None:
        source = args[0]
        if to_device and not _on_device(source):
            counts.copy_in(source, "to")
        elif not to_device and _on_device(source):
            counts.sync("device-to-host copy")
            return func(*inner_args, **inner_kwargs)
    elif func is aten.copy_.default and _on_device(args[0]) != _on_device(args[1]):
        if _on_device(args[1]):
            counts.sync("device-to-host copy")
        else:
            counts.copy_in(args[1], "copy_")
    elif device_inputs:
        if func is aten._local_scalar_dense.default:
            counts.sync("item")
        elif func in DATA_DEPENDENT and not (func is aten.repeat_interleave.Tensor and "output_size" in kwargs):
            counts.sync(func.__name__)
        elif func in INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) and _on_device(i) for i in indices):
                counts.sync(f"{func.__name__} with a boolean mask")
            for i in indices:
                if i is not None and _is_host_array(i):
                    counts.copy_in(i, f"{func.__name__} with host indices")  # CUDA copies them over
        else:
            mixed = [a for a in flat_args if _is_host_array(a)]
            if mixed and func not in (aten.copy_.default, aten._to_copy.default):
                raise RuntimeError(f"{func} mixes host tensors {[tuple(m.shape) for m in mixed]} with device tensors")

    out = func(*inner_args, **inner_kwargs)
    if not (device_inputs or to_device):
        return out
    if func._schema.is_mutable or "out" in kwargs:  # in place: hand back the argument that changed
        return args[0] if "out" not in kwargs else kwargs["out"]
    return tree_map(lambda t: DeviceTensor(t) if isinstance(t, torch.Tensor) and not _on_device(t) else t, out)


class _DataFactories(TorchFunctionMode):
    """``torch.tensor(data, device=DEVICE)`` copies host data without any aten op: counted here."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        asked = kwargs.get("device")
        if func in (torch.tensor, torch.as_tensor) and asked is not None and torch.device(asked) == DEVICE:
            inner = func(*args, **dict(kwargs, device=HOST))
            _counts[-1].copy_in(inner, func.__name__)
            return DeviceTensor(inner)
        return func(*args, **kwargs)


class EmulatedDevice(TorchDispatchMode):
    """``with EmulatedDevice() as counts:`` runs code on :data:`DEVICE` and counts into ``counts``."""

    def __enter__(self) -> Counts:
        self.factories = _DataFactories()
        self.factories.__enter__()
        super().__enter__()
        self.counts = Counts()
        _counts.append(self.counts)
        return self.counts

    def __exit__(self, *exc) -> None:
        _counts.pop()
        super().__exit__(*exc)
        self.factories.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def to_host(value):
    """The CPU tensors inside ``value`` (a tensor, or a list / dict of them), without counting."""
    return tree_map(lambda t: t.inner if _on_device(t) else t, value)
