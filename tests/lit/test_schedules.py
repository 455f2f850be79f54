import io

import pytest
import torch

from frcnn.lit.schedules import warmup_cosine, warmup_multistep


def _optimizer(lr: float = 0.02) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_multistep_by_hand():
    # 4 warm-up steps from 0.1 x lr; 2 steps per epoch, decay at epochs 2 and 3 = steps 4 and 6.
    scheduler = warmup_multistep(
        _optimizer(1.0), steps_per_epoch=2, total_steps=8, warmup_steps=4, warmup_factor=0.1, milestones=[2, 3]
    )
    expected = [0.1, 0.325, 0.55, 0.775, 0.1, 0.1, 0.01, 0.01]
    assert _lrs(scheduler, 8) == pytest.approx(expected)


def test_warmup_multistep_needs_epoch_length():
    with pytest.raises(ValueError, match="steps per epoch"):
        warmup_multistep(_optimizer(), steps_per_epoch=None, total_steps=None)


def test_warmup_cosine_by_hand():
    scheduler = warmup_cosine(_optimizer(1.0), steps_per_epoch=None, total_steps=6, warmup_steps=2, min_factor=0.0)
    lrs = _lrs(scheduler, 7)
    assert lrs[0] == pytest.approx(0.001)
    assert lrs[2] == pytest.approx(1.0)  # end of warm-up
    assert lrs[4] == pytest.approx(0.5)  # half-way through the cosine
    assert lrs[6] == pytest.approx(0.0)


def test_scheduler_state_is_plain_and_resumes():
    scheduler = warmup_multistep(_optimizer(), steps_per_epoch=3, total_steps=30, warmup_steps=5, milestones=[2, 4])
    _lrs(scheduler, 7)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = warmup_multistep(_optimizer(), steps_per_epoch=3, total_steps=30, warmup_steps=5, milestones=[2, 4])
    resumed.load_state_dict(state)
    assert _lrs(resumed, 6) == pytest.approx(_lrs(scheduler, 6))
