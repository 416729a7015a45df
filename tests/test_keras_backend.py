"""Keras backend: zoo models with the docs/protocol.md §4 stems, LR schedule, input pipeline, end-to-end runs."""

# first: it pins KERAS_BACKEND before anything imports keras
import benchmark.backends.keras.engines.tensorflow  # noqa: F401  # isort: skip

import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, SMOKE_RUN, compose, read_json, read_metrics, torch_lrs

from benchmark.backends.keras.models import (
    BN_EPSILON,
    BN_MOMENTUM,
    all_layers,
    create_model,
    feature_map_size,
    parameter_counts,
)
from benchmark.backends.keras.optim import build_lr_schedule
from benchmark.backends.keras.pipelines.tfdata import Normalizer, TrainBatches, eval_batches
from benchmark.data import prepare_dataset
from benchmark.data.normalization import normalize_reference
from benchmark.run.metrics import METRICS_COLUMNS
from benchmark.spec.models import list_models, spec, stem_for
from benchmark.spec.schedule import Schedule, make_schedule

SLICE = ("framework=keras", *SMOKE_RUN)  # 128 training images, 64 val, 64 test, 2 epochs
# the protocol's (image size, classes): CIFAR-10, CIFAR-100, Tiny-ImageNet
SHAPES = ((32, 10), (32, 100), (64, 200))


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("size,classes", SHAPES)
@pytest.mark.parametrize("name", list_models())
def test_model_head_stem_and_final_map(name, size, classes):
    keras.utils.set_random_seed(0)
    model = create_model(name, classes, size)
    out = model(np.zeros((1, size, size, 3), np.float32), training=False)
    assert tuple(out.shape) == (1, classes)
    # logits, not probabilities: the loss applies softmax itself
    assert model.layers[-1].activation in (keras.activations.linear, None)
    assert feature_map_size(model, name, size) == (stem_for(name, size).final_map,) * 2

    layers = {layer.name: layer for layer in model.layers}
    if name.startswith("resnet"):
        assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
        assert tuple(layers["conv1_conv"].kernel.shape[:2]) == ((3, 3) if size == 32 else (7, 7))
        assert layers["conv1_conv"].strides == ((1, 1) if size == 32 else (2, 2))
    elif name == "mobilenetv2":
        assert layers["Conv1"].strides == ((1, 1) if size == 32 else (2, 2))
    else:
        stem = layers[f"{model.name}_stem"].layers[0]
        assert stem.kernel_size == ((3, 3) if size == 32 else (2, 2))
        assert stem.strides == ((1, 1) if size == 32 else (2, 2))
    norms = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(bn.momentum == BN_MOMENTUM and bn.epsilon == BN_EPSILON for bn in norms)

    counts = parameter_counts(model)
    assert counts["trainable"] == model.count_params() - counts["buffers"] - counts["non_trainable"]
    if name != "convnext_tiny":
        assert counts["buffers"] > 0  # BatchNorm moving statistics, as PyTorch's buffers


@pytest.mark.parametrize("size,classes", [(32, 100), (64, 200)])
@pytest.mark.parametrize("name", list_models())
def test_parameter_parity_with_torchvision(name, size, classes):
    from benchmark.backends.pytorch.models import create_model as torch_model
    from benchmark.backends.pytorch.models import parameter_counts as torch_counts

    ours, theirs = parameter_counts(create_model(name, classes, size)), torch_counts(torch_model(name, classes, size))
    # docs/protocol.md §4: the trainable-parameter difference each model's spec allows
    assert abs(ours["trainable"] - theirs["trainable"]) / theirs["trainable"] * 100 < spec(name).param_tolerance_pct
    assert ours["buffers"] == theirs["buffers"]


# -------------------------------------------------------------- schedule


def keras_lrs(schedule: Schedule, steps: int) -> np.ndarray:
    return tf.vectorized_map(build_lr_schedule(schedule), tf.range(steps, dtype=tf.int64)).numpy()


def test_lr_equals_closed_form_at_every_step_of_a_full_schedule():
    s = Schedule(base_lr=0.1, warmup_steps=5 * 175, total_steps=200 * 175, steps_per_epoch=175)
    lrs = keras_lrs(s, s.total_steps + 1)
    reference = np.array([s.lr_at(step) for step in range(s.total_steps + 1)])
    assert np.abs(lrs - reference).max() < 1e-6
    assert lrs[0] == 0.0


def test_lr_of_every_step_equal_between_the_backends():
    """docs/protocol.md §5: both backends' schedulers, stepped as their training loops step them,
    give the same LR at every one of 200 epochs x 175 steps (|Δ| < 1e-6)."""
    s = Schedule(base_lr=0.1, warmup_steps=5 * 175, total_steps=200 * 175, steps_per_epoch=175)
    diff = np.abs(keras_lrs(s, s.total_steps) - np.array(torch_lrs(s)))
    assert diff.max() < 1e-6


@pytest.mark.parametrize("warmup,total", [(0, 50), (50, 50), (3, 4)])
def test_lr_edge_cases(warmup, total):
    s = Schedule(base_lr=0.1, warmup_steps=warmup, total_steps=total, steps_per_epoch=1)
    lrs = keras_lrs(s, total)  # the steps a run takes: 0 .. total-1
    assert np.abs(lrs - np.array([s.lr_at(step) for step in range(total)])).max() < 1e-6


@pytest.fixture(scope="module")
def trainer(data_dir, tmp_path_factory):
    from benchmark.backends.keras.engines.tensorflow import Trainer

    cfg = compose("framework=keras", "limit.train=64", f"data_dir={data_dir}")
    data = prepare_dataset(cfg.dataset, cfg.data_dir)
    schedule = make_schedule(cfg, 64)
    return Trainer(cfg, data, schedule, tmp_path_factory.mktemp("checkpoints"))


def test_the_one_keras_trainer_runs_on_the_tensorflow_engine(trainer):
    from benchmark.backends.keras.trainer import Engine, KerasTrainer

    assert type(trainer) is KerasTrainer and isinstance(trainer.engine, Engine)
    assert (trainer.mode, trainer.engine.lr_per_step) == ("tf.function", False)


def test_trainer_lr_follows_its_step_counter(trainer):
    for step in range(trainer.schedule.total_steps):
        trainer.engine.step.assign(step)
        assert abs(float(trainer.optimizer.learning_rate) - trainer.schedule.lr_at(step)) < 1e-6


def test_weight_decay_is_coupled_l2_on_every_trainable_variable(trainer):
    """Zero loss gradient: the step is pure decay, through Nesterov momentum like torch.optim.SGD.

    From zero momentum, torch gives w - lr * (g + m * buf) with buf = g = wd * w.
    """
    momentum, wd = trainer.cfg.optim.momentum, trainer.cfg.optim.weight_decay
    trainer.engine.step.assign(trainer.schedule.warmup_steps)
    lr = trainer.schedule.lr_at(trainer.schedule.warmup_steps)
    before = [v.numpy().copy() for v in trainer.variables]
    trainer.engine._apply([tf.zeros_like(v) for v in trainer.variables])
    assert int(trainer.engine.step.numpy()) == trainer.schedule.warmup_steps + 1
    for w0, v in zip(before, trainer.variables, strict=True):
        np.testing.assert_allclose(v.numpy(), w0 - lr * (1 + momentum) * wd * w0, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- data


def test_eval_pipeline_normalizes_like_the_reference(data_dir):
    cfg = compose("framework=keras", f"data_dir={data_dir}")
    data = prepare_dataset(cfg.dataset, cfg.data_dir)
    images, labels = data.split("val")
    fixed = images[7:8]  # one real image, no augmentation
    x, y = next(iter(eval_batches(fixed, labels[7:8], 4, Normalizer(data.mean, data.std))))
    assert np.abs(x.numpy() - normalize_reference(fixed, data.mean, data.std)).max() < 1e-5
    assert int(y.numpy()[0]) == int(labels[7])
    # every uint8 value, with CIFAR-like statistics
    every = np.arange(256 * 3, dtype=np.int64).reshape(1, 16, 16, 3).astype(np.uint8)
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    x, _ = next(iter(eval_batches(every, np.zeros(1, np.int64), 1, Normalizer(mean, std))))
    assert np.abs(x.numpy() - normalize_reference(every, mean, std)).max() < 1e-5


def test_eval_pipeline_matches_the_torch_normalizer(data_dir):
    import torch

    from benchmark.backends.pytorch.data import Normalizer as TorchNormalizer

    cfg = compose("framework=keras", f"data_dir={data_dir}")
    data = prepare_dataset(cfg.dataset, cfg.data_dir)
    images, labels = data.split("val")
    fixed = images[7:8]
    x, _ = next(iter(eval_batches(fixed, labels[7:8], 4, Normalizer(data.mean, data.std))))
    theirs = TorchNormalizer(data.mean, data.std, torch.device("cpu"))(torch.from_numpy(fixed))
    assert np.abs(x.numpy() - theirs.permute(0, 2, 3, 1).numpy()).max() < 1e-5


def test_eval_pipeline_keeps_every_sample_in_order():
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    batches = list(eval_batches(images, np.arange(10), 4, Normalizer([0, 0, 0], [1, 1, 1])))
    assert [int(y.shape[0]) for _, y in batches] == [4, 4, 2]
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == list(range(10))


def _identity_batches(n=40, size=8, batch=8, batches=4, padding=2, seed=3):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (n, size, size, 3), dtype=np.uint8)  # no zeros: padding is visible
    # mean 0, std 1/255 turns the normalized batch back into the uint8 pixels
    pipe = TrainBatches(images, np.arange(n), batch, batches, padding, Normalizer([0, 0, 0], [1 / 255] * 3), seed)
    return images, pipe


def _epoch(pipe):
    return [(np.rint(x.numpy()).astype(np.int64), y.numpy()) for x, y in pipe.epoch()]


def test_train_pipeline_drops_the_remainder_and_augments_by_crop_and_flip():
    images, pipe = _identity_batches()
    batches = _epoch(pipe)
    assert len(batches) == 4 and all(y.shape == (8,) for _, y in batches)
    seen = np.concatenate([y for _, y in batches])
    assert len(set(seen.tolist())) == 32  # 32 of the 40 images, none twice
    p, flips, shifts = 2, 0, 0
    for x, y in batches:
        for out, index in zip(x, y, strict=True):
            padded = np.pad(images[index].astype(np.int64), ((p, p), (p, p), (0, 0)))
            windows = [
                (dy, dx, flip)
                for dy in range(2 * p + 1)
                for dx in range(2 * p + 1)
                for flip in (0, 1)
                if np.array_equal(out, (lambda w: w[:, ::-1] if flip else w)(padded[dy : dy + 8, dx : dx + 8]))
            ]
            assert windows, "an output image is not a flipped/unflipped crop of its padded input"
            flips += windows[0][2]
            shifts += (windows[0][0], windows[0][1]) != (p, p)
    assert 0 < flips < 32 and shifts > 16


def test_train_pipeline_is_reproducible_and_resumes_from_a_checkpoint(tmp_path):
    _, first = _identity_batches(seed=3)
    _, same = _identity_batches(seed=3)
    _, other = _identity_batches(seed=4)
    epoch1 = _epoch(first)
    assert all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(epoch1, _epoch(same), strict=True)
    )
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch1, _epoch(other), strict=True))

    prefix = tf.train.Checkpoint(generator=first.generator).write(str(tmp_path / "data"))
    epoch2 = _epoch(first)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch1, epoch2, strict=True))
    _, resumed = _identity_batches(seed=3)
    tf.train.Checkpoint(generator=resumed.generator).read(prefix).assert_consumed()
    assert all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(epoch2, _epoch(resumed), strict=True)
    )


# ----------------------------------------------------------- end to end


@pytest.mark.cli
def test_two_epoch_keras_run_writes_the_run_directory_contract(trained_run):
    run_dir, result = trained_run("keras")
    assert "epoch 1/2  step" in result.stdout and "epoch 2/2  train_loss" in result.stdout

    rows = read_metrics(run_dir)
    assert tuple(rows[0]) == METRICS_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    schedule = make_schedule(compose(*SLICE), 128)
    for epoch, row in enumerate(rows):
        assert all(math.isfinite(float(v)) for v in row.values())
        assert float(row["epoch_time_seconds"]) > 0
        assert float(row["learning_rate"]) == pytest.approx(schedule.epoch_lr(epoch), abs=1e-9)

    test = read_json(run_dir / "test.json")
    assert test["test_images"] == 64 and test["best_epoch"] in (1, 2) and 0 <= test["test_accuracy"] <= 1
    env = read_json(run_dir / "env.json")
    assert env["framework"] == "keras" and env["tensorflow"] == tf.__version__ and env["keras"] == keras.__version__
    for key in ("cuda", "cudnn", "gpu_name", "gpu_driver", "python", "git_commit"):
        assert key in env
    assert read_json(run_dir / "status.json")["state"] == "completed"

    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "best.weights.h5").is_file() and read_json(checkpoints / "best.json")["meta"]["epoch"] >= 1
    last = read_json(checkpoints / "last.json")
    assert last["meta"]["epoch"] == 2 and set(last["meta"]) >= {"epoch", "best", "learning_rate"}
    files = sorted(p.name for p in (checkpoints / "last").iterdir())
    assert files and all(name.startswith(last["checkpoint"].split("/")[-1] + ".") for name in files)
    assert not [p for p in checkpoints.rglob("*") if "tmp" in p.name]


IN_PROCESS = r"""
import json, pathlib, sys
sys.path.insert(0, {tests!r})
from helpers import compose, read_json, read_metrics, without_timing
from benchmark.run.loop import train_and_test
from benchmark.backends.keras.trainer import KerasTrainer

root, data_dir = pathlib.Path({root!r}), {data_dir!r}
args = ("framework=keras", "debug=smoke", "epochs=3", "optim.warmup_epochs=1", "limit.train=64", "data_dir=" + data_dir)
train_and_test(compose(*args), root / "reference")

class Preempted(Exception):
    pass

whole = KerasTrainer.train_epoch
def stop_in_third_epoch(self, epoch, progress):
    if epoch == 2:
        raise Preempted
    return whole(self, epoch, progress)

KerasTrainer.train_epoch = stop_in_third_epoch
try:
    train_and_test(compose(*args), root / "resumed")
except Preempted:
    pass
KerasTrainer.train_epoch = whole
assert read_json(root / "resumed" / "checkpoints" / "last.json")["meta"]["epoch"] == 2
train_and_test(compose(*args), root / "resumed")

# gradient accumulation and mixed precision (bfloat16 on a CPU) in the same process
mixed = train_and_test(compose(*args, "epochs=1", "grad_accum_steps=2", "precision=amp"), root / "mixed")

strip = without_timing
tests = [read_json(root / name / "test.json") for name in ("reference", "resumed")]
for t in tests:
    t.pop("finished_at")
print("RESULT " + json.dumps({{
    "same_metrics": strip(read_metrics(root / "reference")) == strip(read_metrics(root / "resumed")),
    "same_test": tests[0] == tests[1],
    "epochs": len(read_metrics(root / "resumed")),
    "mixed_loss": float(read_metrics(root / "mixed")[0]["train_loss"]),
    "torch": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")),
    "tensorflow": "tensorflow" in sys.modules,
}}))
"""


@pytest.mark.slow
@pytest.mark.cli
def test_keras_run_resumes_exactly_and_imports_no_torch(tmp_path, data_dir):
    """In a fresh process: a run stopped after epoch 2 and resumed ends exactly like an
    uninterrupted one (same seed, deterministic ops), and nothing imports PyTorch."""
    code = IN_PROCESS.format(tests=str(REPO / "tests"), root=str(tmp_path), data_dir=str(data_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["epochs"] == 3
    assert result["same_metrics"] and result["same_test"]
    assert math.isfinite(result["mixed_loss"])
    assert result["tensorflow"] and result["torch"] == []
