"""The config schema rejects bad input before any work, with a message that says what."""

import pytest
from helpers import compose, run_cli, run_main
from omegaconf import OmegaConf

from benchmark.spec.models import list_models


def test_default_config_composes_and_interpolates():
    cfg = compose()
    assert cfg.framework.name == "pytorch" and cfg.dataset.name == "digits" and cfg.model.name == "mobilenetv2"
    assert cfg.epochs == cfg.dataset.epochs == 10
    assert cfg.batch_size == 32 and cfg.optim.warmup_epochs == 1


@pytest.mark.parametrize(
    "dataset,epochs,classes,size",
    [
        ("cifar10", 200, 10, 32),
        ("cifar100", 200, 100, 32),
        ("tiny_imagenet", 100, 200, 64),
        ("digits", 10, 10, 32),
    ],
)
def test_dataset_groups(dataset, epochs, classes, size):
    cfg = compose(f"dataset={dataset}")
    assert (cfg.epochs, cfg.dataset.num_classes, cfg.dataset.image_size) == (epochs, classes, size)
    if dataset != "digits":
        assert cfg.batch_size == 256 and cfg.optim.warmup_epochs == 5 and cfg.optim.lr == 0.1
    assert OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_epochs_override():
    assert compose("dataset=cifar10", "epochs=3").epochs == 3


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model=vgg16", ["model", *list_models()]),
        ("dataset=mnist", ["dataset", "cifar10", "cifar100", "tiny_imagenet", "digits"]),
        ("precision=fp8", ["precision", "fp32", "amp"]),
        ("seed=abc", ["seed", "abc"]),
        ("batch_size=big", ["batch_size", "big"]),
        ("optim.momentum=fast", ["optim.momentum"]),
        ("learning_rate=0.1", ["learning_rate"]),
        ("dataset.colour=red", ["colour"]),
    ],
)
def test_bad_config_fails_before_work_with_a_message(override, expected, tmp_path):
    code, _, stderr = run_main(override, f"hydra.run.dir={tmp_path / 'run'}", f"data_dir={tmp_path / 'data'}")
    assert code != 0
    for word in expected:
        assert word in stderr, stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "data").exists()  # no data prepared: it failed before any work


@pytest.mark.parametrize(
    "overrides,named",
    [
        (("batch_size=30", "grad_accum_steps=4"), "grad_accum_steps=4"),
        (("batch_size=0",), "batch_size=0"),
        (("framework.device=gpu",), "framework.device=gpu"),
        (("model.name=vgg16",), "model.name=vgg16 is unknown; valid: resnet50, mobilenetv2"),  # no ModelSpec
        (("dataset.val_size=3",), "dataset.val_size=3"),
        (("epochs=0",), "epochs=0"),
        (("+optim.momentm=0.5",), "unknown config key(s) optim.momentm (added with '+')"),  # a typo
        (("+foo=1", "+limit.tset=3"), "foo, limit.tset"),
    ],
)
def test_inconsistent_values_are_one_line_errors_before_any_work(tmp_path, overrides, named):
    code, _, stderr = run_main(*overrides, f"hydra.run.dir={tmp_path / 'run'}", f"data_dir={tmp_path / 'data'}")
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and named in last
    assert list(tmp_path.iterdir()) == []  # checked before Hydra made the run directory


def test_help_and_cfg_job():
    code, help_text, _ = run_main("--help")
    assert code == 0
    for word in ("framework", "model", "dataset", "precision", "--multirun", "debug"):
        assert word in help_text
    code, job, _ = run_main("--cfg", "job", "model=resnet50", "dataset=cifar100", "precision=amp")
    assert code == 0
    cfg = OmegaConf.create(job)
    assert cfg.model.name == "resnet50" and cfg.dataset.name == "cifar100" and cfg.precision.mixed is True


@pytest.mark.cli
def test_a_config_hydra_cannot_compose_exits_1_from_the_command_line(tmp_path):
    """The one subprocess of Hydra's own exit path (the in-process cases are above)."""
    result = run_cli("model=vgg16", f"hydra.run.dir={tmp_path / 'run'}", f"data_dir={tmp_path / 'data'}")
    assert result.returncode == 1 and "model" in result.stderr and "vgg16" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_smoke_run_is_one_word_and_a_short_run_says_so():
    """debug=smoke makes any dataset a short run that passes the checks; a short run of
    the protocol (epochs=1 keeps the dataset's warm-up) names both ways out."""
    from benchmark import BenchmarkError
    from benchmark.run.loop import validate

    for dataset in ("digits", "cifar10", "cifar100", "tiny_imagenet"):
        cfg = compose(f"dataset={dataset}", "debug=smoke")
        validate(cfg)
        assert (cfg.epochs, cfg.optim.warmup_epochs) == (1, 0)
        assert (cfg.limit.train, cfg.limit.val, cfg.limit.test) == (128, 64, 64)
    short = r"optim.warmup_epochs=5 is out of range: valid \[0, epochs = 1\], whole numbers"
    with pytest.raises(BenchmarkError, match=short + "; set optim.warmup_epochs=0 or use debug=smoke$"):
        validate(compose("dataset=cifar10", "epochs=1"))
    # the sweep report of a smoke sweep draws no figures
    hydra_cfg = compose("debug=smoke", return_hydra=True)
    assert hydra_cfg.hydra.callbacks.sweep_report.plots is False
    assert compose(return_hydra=True).hydra.callbacks.sweep_report.plots is True
