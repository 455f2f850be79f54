"""Probes for the two costs a profiler's timings hide: host synchronisations and
activation memory. Both work on any device, so CPU tests guard what a GPU would pay.

``HostSyncCounter`` counts the operations that make the host wait for the device:
reading a value (``.item()``, ``bool()``, ``.tolist()``, a copy to the CPU), outputs whose
shape depends on the data (``nonzero``, boolean-mask indexing, ``unique``, NMS, …), and
copies of host data to the device (``torch.tensor(list, device=...)``, a blocking copy on
CUDA). On the CPU nothing waits, but the same code would on a GPU, so the count is the same.

``SavedTensorBytes`` adds up the bytes autograd keeps for backward, each storage once,
leaving out parameters and buffers (they are held anyway). ``PeakHostMemory`` gives the most
host memory the process held allocated at once inside it (CPU runs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import traceback
from collections import Counter
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCounter", "PeakHostMemory", "SavedTensorBytes"]

aten = torch.ops.aten
_HOST_READS = {aten._local_scalar_dense.default}
_DATA_DEPENDENT_SHAPE = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,  # CUDA reads the maximum to size its output
    aten.repeat_interleave.Tensor,  # without output_size
}
_MASK_INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}
_COPIES = {aten._to_copy.default, aten.copy_.default}


def _is_data_dependent(func, args: tuple, kwargs: dict) -> bool:
    if func in _DATA_DEPENDENT_SHAPE:
        return func is not aten.repeat_interleave.Tensor or kwargs.get("output_size") is None
    if func in _MASK_INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)
    return func.namespace == "torchvision" and func.__name__.startswith("nms")


def _crosses_host(func, args: tuple, kwargs: dict, out) -> bool:
    if func not in _COPIES or not isinstance(out, Tensor):
        return False
    source = args[1] if func is aten.copy_.default else args[0]
    return (source.device.type == "cpu") != (out.device.type == "cpu")


class HostSyncCounter:
    """Context manager: ``with HostSyncCounter() as syncs: model(...)``; then ``syncs.total``,
    ``syncs.by_kind`` (``read``, ``data-dependent``, ``host-to-device``) and, with
    ``where=True``, ``syncs.by_site`` (the innermost frame under ``packages``, e.g.
    ``rpn.py:142``)."""

    def __init__(self, where: bool = False, packages: Iterable[str] = ("frcnn", "torchvision")) -> None:
        self.where = where
        self.packages = tuple(f"/{p}/" for p in packages)
        self.by_kind: Counter[str] = Counter()
        self.by_site: Counter[str] = Counter()
        self._modes = (_ReadMode(self), _DispatchMode(self))
        self._reading = 0  # inside Tensor.tolist, whose copy to the host is counted once

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def record(self, kind: str) -> None:
        self.by_kind[kind] += 1
        if self.where:
            frames = [
                f
                for f in traceback.extract_stack()
                if any(p in f.filename for p in self.packages) and not f.filename.endswith("probes.py")
            ]
            site = "?"
            if frames:
                folder, name = frames[-1].filename.rsplit("/", 2)[-2:]
                site = f"{folder}/{name}:{frames[-1].lineno}"
            self.by_site[f"{kind} {site}"] += 1

    def __enter__(self) -> HostSyncCounter:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


class _ReadMode(TorchFunctionMode):
    """``Tensor.tolist`` reads device memory without dispatching an op on the CPU."""

    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is not Tensor.tolist:
            return func(*args, **(kwargs or {}))
        self.counter.record("read")
        self.counter._reading += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.counter._reading -= 1


class _DispatchMode(TorchDispatchMode):
    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.counter._reading:
            return out
        if func in _HOST_READS:
            self.counter.record("read")
        elif func is aten.lift_fresh.default:
            self.counter.record("host-to-device")
        elif _is_data_dependent(func, args, kwargs):
            self.counter.record("data-dependent")
        elif _crosses_host(func, args, kwargs, out):
            self.counter.record("read" if out.device.type == "cpu" else "host-to-device")
        return out


class SavedTensorBytes:
    """Context manager: bytes of the tensors autograd saves for backward inside it.

    Each storage counts once (a view and its base, or one tensor saved by two ops), with its
    full size; ``exclude`` (the model's parameters and buffers) is left out. ``by_dtype``
    splits ``total`` by the storage's dtype.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._storages: dict[tuple, tuple[int, torch.dtype, torch.UntypedStorage]] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    @property
    def total(self) -> int:
        return sum(size for size, _, _ in self._storages.values())

    @property
    def by_dtype(self) -> dict[torch.dtype, int]:
        sizes: Counter[torch.dtype] = Counter()
        for size, dtype, _ in self._storages.values():
            sizes[dtype] += size
        return dict(sizes)

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = (tensor.device, storage.data_ptr())
        if storage.data_ptr() not in self._excluded and key not in self._storages:
            # The storage is held so that its address cannot be reused by a later tensor.
            self._storages[key] = (storage.nbytes(), tensor.dtype, storage)
        return tensor

    def __enter__(self) -> SavedTensorBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


class PeakHostMemory(TorchDispatchMode):
    """Context manager: ``with PeakHostMemory() as memory: ...``; then ``memory.peak_bytes``, the
    most bytes malloc had handed out at once (beyond what it had at entry) after any op inside.

    Reads glibc's ``mallinfo2`` (bytes in use, heap and mmap-ed) after every dispatched op: an
    exact count of live allocations, unlike the resident set size, which keeps freed pages and
    varies from run to run. ``PeakHostMemory.available()`` says whether this libc has it.
    """

    _libc = ctypes.CDLL(ctypes.util.find_library("c") or None)

    def __init__(self) -> None:
        super().__init__()
        self._start = 0
        self.peak_bytes = 0

    @classmethod
    def available(cls) -> bool:
        return hasattr(cls._libc, "mallinfo2")

    def _in_use(self) -> int:
        info = self._libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def __enter__(self) -> PeakHostMemory:
        self._libc.mallinfo2.restype = _MallInfo2
        self._start = self._in_use()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak_bytes = max(self.peak_bytes, self._in_use() - self._start)
        return out
