"""The probes count what they claim on hand-made cases."""

import torch

from frcnn.ops.probes import HostSyncCounter, SavedTensorBytes


def test_host_sync_counter_kinds():
    x = torch.randn(10)
    mask = x > 0
    with HostSyncCounter(where=True) as syncs:
        x.sum().item()
        bool(mask.any())
        x.tolist()
        x[mask]
        torch.nonzero(mask)
        x.unique()
        torch.tensor([1, 2])
    assert syncs.by_kind == {"read": 3, "data-dependent": 3, "host-to-device": 1}
    assert sum(syncs.by_site.values()) == 7


def test_host_sync_counter_ignores_fixed_shape_work():
    x = torch.randn(10)
    with HostSyncCounter() as syncs:
        x.topk(3)
        x[torch.arange(3)]
        x.masked_fill(x > 0, 0.0)
        torch.where(x > 0, x, 0.0)
        torch.full((2,), 3)
        x[x.argsort()[:4]] = 1.0
        x[x > 0] = 0.0  # masked_fill_, however the release dispatches it
        sizes = torch.empty(2, dtype=torch.int64)
        sizes[0], sizes[1] = x.shape[0], 7  # Python numbers reach the kernel as arguments
    assert syncs.total == 0


def test_host_sync_counter_counts_mask_indexing_that_is_not_a_fill():
    x = torch.arange(10.0) - 4.5  # five positive
    mask = x > 0
    with HostSyncCounter() as syncs:
        x[mask] = torch.zeros(10)[mask]  # values shaped by the mask
        x.index_put_((mask,), torch.tensor(1.0), accumulate=True)
    assert syncs.by_kind == {"data-dependent": 3}


def test_saved_bytes_counts_each_storage_once_and_skips_parameters():
    weight = torch.nn.Parameter(torch.randn(64, 32))
    x = torch.randn(8, 32, requires_grad=True)
    with SavedTensorBytes(exclude=[weight]) as saved:
        y = x @ weight.t()  # saves x (and the parameter, left out)
        z = y.exp()  # saves its result
        w = z * z.view(8, 64)  # saves z twice: one storage
    assert saved.total == x.nbytes + z.nbytes
    assert saved.by_dtype == {torch.float32: x.nbytes + z.nbytes}
    w.sum().backward()
