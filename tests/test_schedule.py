"""The LR protocol: closed form, torch's schedulers, and the logged LR."""

import math

import pytest
from helpers import compose, torch_lrs

from benchmark.spec.schedule import Schedule, make_schedule

BASE = 0.1


def test_closed_form_landmarks():
    s = Schedule(base_lr=BASE, warmup_steps=5 * 175, total_steps=200 * 175, steps_per_epoch=175)
    assert s.lr_at(0) == 0.0
    assert s.lr_at(437) == pytest.approx(BASE * 437 / 875)
    assert s.lr_at(s.warmup_steps) == pytest.approx(BASE)
    assert s.lr_at(s.total_steps) == pytest.approx(0.0, abs=1e-12)
    mid = s.warmup_steps + (s.total_steps - s.warmup_steps) // 2
    assert s.lr_at(mid) == pytest.approx(BASE / 2, abs=1e-5)  # one step off the exact middle


def test_torch_scheduler_equals_closed_form_on_a_full_schedule():
    s = Schedule(base_lr=BASE, warmup_steps=5 * 175, total_steps=200 * 175, steps_per_epoch=175)
    lrs = torch_lrs(s)
    worst = max(abs(lr - s.lr_at(step)) for step, lr in enumerate(lrs))
    assert worst < 1e-6
    # the landmarks the protocol names: step 0, end of warmup, last step
    for step in (0, s.warmup_steps - 1, s.warmup_steps, s.total_steps - 1):
        assert abs(lrs[step] - s.lr_at(step)) < 1e-6
    assert lrs[0] == 0.0


@pytest.mark.parametrize("warmup,total", [(0, 50), (50, 50), (80, 50), (3, 4)])
def test_torch_scheduler_edge_cases(warmup, total):
    s = Schedule(base_lr=BASE, warmup_steps=min(warmup, total), total_steps=total, steps_per_epoch=1)
    assert max(abs(lr - s.lr_at(i)) for i, lr in enumerate(torch_lrs(s))) < 1e-6


def test_make_schedule_from_config():
    cfg = compose("dataset=cifar10")
    s = make_schedule(cfg, 45_000)
    assert s.steps_per_epoch == 175  # 45,000 // 256, remainder dropped
    assert s.warmup_steps == 5 * 175 and s.total_steps == 200 * 175 and s.base_lr == BASE
    assert s.epoch_lr(0) == pytest.approx(BASE * 174 / 875)
    assert s.epoch_lr(199) == pytest.approx(BASE * 0.5 * (1 + math.cos(math.pi * 34124 / 34125)))
    # linear scaling of the peak with the effective batch
    assert make_schedule(compose("dataset=cifar10", "batch_size=128"), 45_000).base_lr == pytest.approx(0.05)
