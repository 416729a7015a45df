"""One run, framework-neutral: prepare data, train epoch by epoch, checkpoint, test.

The epoch loop, the metrics, the best-checkpoint rule and the run directory are the
same for every backend because they are written once, here; a backend only trains
an epoch, predicts, saves and restores (benchmark.backends.contract.Trainer).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from pathlib import Path

from omegaconf import OmegaConf

from benchmark import BenchmarkError
from benchmark.backends import Backend, Trainer, check_options, determinism_errors, load_backend
from benchmark.data import prepare_dataset
from benchmark.data.cache import READERS
from benchmark.files import atomic_write_text, is_safe_name, redact_url, refuse_links_out, url_has_secrets, write_json
from benchmark.run import host
from benchmark.run.metrics import DIVERGED, TIMING_COLUMNS, MetricsLog, classification_scores
from benchmark.run.resume import check_same_data, check_same_run, comparable_config
from benchmark.run.rundir import RunDir
from benchmark.run.tensorboard import TensorBoardLog
from benchmark.spec.config import check_values, keys_outside_schema
from benchmark.spec.frameworks import check_engine, check_execution
from benchmark.spec.protocol import SETTINGS, Knobs
from benchmark.spec.runkey import MODE_FIELD, VARIANT_FIELD, key_of_config
from benchmark.spec.schedule import make_schedule

log = logging.getLogger("benchmark")


# The config values that become a file or folder name: the run directory's (the run
# key's fields) and the cache's and the raw archive's. Each must be one safe name.
PATH_NAMES = (
    "framework.name",
    "framework.engine",
    "framework.execution",
    "dataset.name",
    "model.name",
    "precision.name",
    "protocol.name",
    "dataset.archive",
)


def check_names(cfg, run_dir=None) -> None:
    """Refuse (one line) a value that would lead a path out of where runs and caches live
    ("../..", "/", NUL, control characters), before Hydra creates any directory; and a
    run directory that is a link or holds links pointing out of it."""
    for key in PATH_NAMES:
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if value is not None and not is_safe_name(value):
            raise BenchmarkError(
                f"{key}={value!r} cannot be a file name: letters, digits and . _ + = - only (no '/', '..' or "
                "control characters); nothing was written"
            )
    mode = OmegaConf.select(cfg, "hydra.mode", default=None)
    if getattr(mode, "name", mode) == "MULTIRUN":
        # a sweep's run lies in hydra.sweep.subdir: the run key and the other overrides (the variant)
        subdir = str(OmegaConf.select(cfg, "hydra.sweep.subdir", default=""))
        if ".." in subdir.split("/") or any(not c.isprintable() for c in subdir):
            raise BenchmarkError(
                f"the run's sub-directory {subdir!r} (named by the overrides) would hold '..' or a control "
                "character; set such a value in a config file, not on the command line of a sweep; nothing was written"
            )
        if url_has_secrets(subdir):
            raise BenchmarkError(
                f"the run's sub-directory {redact_url(subdir)!r} (named by the overrides) would hold the "
                "credentials of a URL: put them in ~/.netrc (docs/security.md); nothing was written"
            )
    if cfg.dataset.name not in READERS:
        raise BenchmarkError(f"dataset.name={cfg.dataset.name} is unknown; valid: {', '.join(READERS)}")
    # a sweep skips a completed run before Hydra writes anything in it, so it may be a link
    # (a sweep reusing another's runs); a single run's directory is Hydra's to write first
    reused = (
        getattr(mode, "name", mode) == "MULTIRUN" and run_dir is not None and _holds_completed_run(Path(str(run_dir)))
    )
    if run_dir is not None and not reused:
        refuse_links_out(Path(str(run_dir)), "the run directory", own=True)
    if url_has_secrets(cfg.dataset.url):
        log.warning(
            "dataset.url holds credentials or a query token: the benchmark writes it as %s, but Hydra's .hydra/ "
            "record of the run keeps what was typed; put them in ~/.netrc instead (docs/security.md)",
            redact_url(cfg.dataset.url),
        )


def _holds_completed_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a completed run (its status and its test result)."""
    rd = RunDir(run_dir)
    return (rd.read_status() or {}).get("state") == "completed" and rd.read_test() is not None


def validate(cfg, run_dir=None, run_dir_key: str = "hydra.run.dir") -> None:
    """Checks of a run's config before any work (and, from benchmark.run.cli.CheckValues and
    the resumable sweeper, before Hydra writes anything); raises BenchmarkError (one line)."""
    extra = keys_outside_schema(cfg)
    if extra:
        raise BenchmarkError(
            f"unknown config key(s) {', '.join(extra)} (added with '+'); the schema in "
            "benchmark/spec/config.py lists the valid ones: fix the name or drop the override"
        )
    check_names(cfg, run_dir)
    check_values(cfg, run_dir, run_dir_key)  # every numeric option against its range (benchmark.spec.config.RANGES)
    engine = check_engine(cfg.framework.name, cfg.framework.engine)  # known, and installed here
    # a mode the framework has on that engine (CUDA graphs not on framework.device=cpu)
    check_execution(cfg.framework.name, engine, cfg.framework.execution, cfg.framework.device)
    check_options(cfg, engine)  # the backend's own rules (benchmark.backends.OPTION_RULES)
    if cfg.protocol.name not in SETTINGS:
        raise BenchmarkError(
            f"protocol.name={cfg.protocol.name} is unknown; valid: {', '.join(SETTINGS)} "
            "(choose a protocol with protocol=..., then change single knobs)"
        )
    Knobs.of(cfg.protocol)
    if cfg.batch_size % cfg.grad_accum_steps:
        raise BenchmarkError(
            f"batch_size={cfg.batch_size} is not divisible by grad_accum_steps={cfg.grad_accum_steps}; "
            "the micro-batch must be a whole number"
        )
    if len(set(cfg.dataset.accuracy_targets)) != len(cfg.dataset.accuracy_targets):
        raise BenchmarkError(f"dataset.accuracy_targets={list(cfg.dataset.accuracy_targets)}: each target once")


def _limited(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def run_summary(cfg, data, train_size: int, schedule, mode: str, variant: str) -> dict:
    """What identifies the run and what the analysis needs to turn epoch times into images/s."""
    return {
        **key_of_config(cfg),
        # the overrides outside the key that this run was launched with ("" for none)
        VARIANT_FIELD: redact_url(variant),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "grad_accum_steps": cfg.grad_accum_steps,
        "train_images": train_size,
        # which prepared data the run saw (the analysis flags a dataset run on two)
        "data_source": data.source,
        "data_fingerprint": data.fingerprint,
        "steps_per_epoch": schedule.steps_per_epoch,
        "images_per_epoch": schedule.steps_per_epoch * cfg.batch_size,
        "warmup_steps": schedule.warmup_steps,
        "total_steps": schedule.total_steps,
        "peak_lr": schedule.base_lr,
        "accuracy_targets": sorted(cfg.dataset.accuracy_targets),  # the analysis's time-to-accuracy targets
        "deterministic": cfg.framework.deterministic,
        # never pool runs of different modes: the analysis reports it per run
        MODE_FIELD: mode,
        "config": comparable_config(cfg),
    }


def _column(rows: list[dict], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


def performance_summary(rows: list[dict], startup_seconds: float, trainer: Trainer) -> dict:
    """Timing and memory facts of a finished run (docs/performance.md).

    The first epoch pays for graph tracing, compilation and autotuning; reporting that
    overhead on its own keeps it out of the steady-state figures. The totals add up the
    epochs' TIMING_COLUMNS (epochs of earlier launches included; None where no epoch
    recorded them), and `other_seconds_total` is what the epochs' wall time holds
    beyond training, evaluation, checkpoints and logging.
    """
    times = _column(rows, "epoch_time_seconds")
    overhead = times[0] - statistics.median(times[1:]) if len(times) > 1 else None
    timed = [r for r in rows if r.get("epoch_wall_seconds") not in (None, "")]
    sums = {name: sum(_column(timed, name)) for name in ("epoch_time_seconds", *TIMING_COLUMNS)}
    totals: dict[str, float | None] = {
        f"{name[: -len('_seconds')]}_seconds_total": (sums[name] if timed else None) for name in TIMING_COLUMNS
    }
    train_total = sums["epoch_time_seconds"] if timed else None
    # what the wall time holds beyond the parts: the trainer's work outside its own clock
    other = sums["epoch_wall_seconds"] - sum(sums[name] for name in ("epoch_time_seconds", *TIMING_COLUMNS[1:]))
    return {
        "startup_seconds": startup_seconds,  # process start -> first training step (last launch)
        "first_epoch_seconds": times[0] if times else None,
        "first_epoch_overhead_seconds": overhead,
        "train_seconds_total": train_total,
        **totals,
        "other_seconds_total": other if timed else None,
        "peak_host_rss_bytes": host.peak_host_rss_bytes(),
        **trainer.peak_memory(),
    }


def train_and_test(cfg, run_dir: Path, variant: str = "") -> dict:
    """Train one run into `run_dir` (resuming from its last checkpoint) and return test.json.

    `variant`: the overrides outside the run key it was launched with (Hydra's
    override_dirname), recorded so that the analysis never pairs it with the protocol's runs."""
    validate(cfg)
    rd = RunDir(run_dir)
    check_same_run(rd.root, cfg)
    data = prepare_dataset(cfg.dataset, cfg.data_dir)
    check_same_data(rd.root, data)
    train_size = _limited(len(data.train_idx), cfg.limit.train)
    schedule = make_schedule(cfg, train_size)
    backend: Backend = load_backend(cfg.framework.name, cfg.framework.engine)
    trainer: Trainer = backend.Trainer(cfg, data, schedule, rd.checkpoints)
    val_x, val_y = data.split("val", cfg.limit.val)
    # The best checkpoint is saved before the last one: a run killed in between has a
    # best newer than its last, and that file is what the test will evaluate. `best` is
    # read for its record only when there is a `last` to resume from (killed between
    # the two saves of epoch 1, a run starts afresh), and loading it puts the best
    # weights into the model, so `last` is loaded after it once more.
    resumed = trainer.restore("last")
    best_meta = trainer.restore("best") if resumed else None
    if best_meta:
        trainer.restore("last")
    start_epoch = resumed["epoch"] if resumed else 0
    best = best_meta["best"] if best_meta and resumed else {"val_accuracy": -1.0, "epoch": 0}
    metrics = MetricsLog(rd.metrics)  # a damaged history is refused here, before anything is written
    metrics.truncate(start_epoch)
    rd.set_status("running")
    # the float32 policy and determinism as the framework reports them back (docs/protocol.md §8, §9)
    write_json(
        rd.env,
        {**host.collect(), **backend.environment(), "device": str(trainer.device), **trainer.settings_in_force()},
    )
    # .hydra/config.yaml keeps interpolations (${dataset.epochs}, ${oc.env:...}); this is
    # every value as the run used it
    atomic_write_text(rd.root / "config_resolved.yaml", redact_url(OmegaConf.to_yaml(cfg, resolve=True)))
    summary = run_summary(cfg, data, train_size, schedule, trainer.mode, variant)
    write_json(rd.summary, summary)
    board = TensorBoardLog(rd.root, start_epoch)
    if resumed:
        log.info("resuming after epoch %d from %s", start_epoch, rd.checkpoints)
    log.info(
        "%s %s on %s (%s), seed %d: %d train / %d val images, %d epochs x %d steps, "
        "batch %d (x%d accumulation), peak lr %.4g",
        cfg.framework.name,
        cfg.model.name,
        cfg.dataset.name,
        cfg.precision.name,
        cfg.seed,
        train_size,
        len(val_y),
        cfg.epochs,
        schedule.steps_per_epoch,
        cfg.batch_size,
        cfg.grad_accum_steps,
        schedule.base_lr,
    )

    startup_seconds = time.time() - host.process_start_time()
    loop_start = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        label = f"epoch {epoch + 1}/{cfg.epochs}"

        def progress(step: int, steps: int, loss: float, label=label) -> None:
            log.info("%s  step %d/%d  train_loss %.4f", label, step, steps, loss)

        # Every second of the epoch is accounted for (metrics.csv TIMING_COLUMNS): training
        # (the trainer's own clock, the steps), evaluation, checkpoints, and the writes
        # of metrics, TensorBoard and status; what is left of the wall time is the
        # trainer's work outside its clock (setting up the epoch's batches).
        started = time.perf_counter()
        with determinism_errors():  # an op without a deterministic kernel: one line naming it
            stats = trainer.train_epoch(epoch, progress)
            trained = time.perf_counter()
            val_loss, val_pred = trainer.predict(val_x, val_y)
        # The train loss is taken before each update, so weights broken by the epoch's
        # last step show first in the val loss.
        for name, value in (("train_loss", stats.loss), ("val_loss", val_loss)):
            if not math.isfinite(value):
                raise BenchmarkError(f"{DIVERGED}: {name} is {value} in epoch {epoch + 1}")
        val_acc, val_f1 = classification_scores(val_y, val_pred, data.num_classes)
        evaluated = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            "train_accuracy": stats.accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "val_macro_f1": val_f1,
            "epoch_time_seconds": stats.seconds,
            "learning_rate": schedule.epoch_lr(epoch),
        }
        # the row before the checkpoints: a checkpoint never holds an epoch the history lacks
        metrics.append(row)
        images_per_sec = stats.images / stats.seconds if stats.seconds > 0 else float("nan")
        board.add_epoch(row, images_per_sec)
        logged = time.perf_counter()
        if val_acc > best["val_accuracy"]:
            best = {"val_accuracy": val_acc, "val_macro_f1": val_f1, "epoch": epoch + 1}
            trainer.save("best", {"epoch": epoch + 1, "best": best})
        trainer.save("last", {"epoch": epoch + 1, "best": best, "learning_rate": row["learning_rate"]})
        saved = time.perf_counter()
        rd.set_progress(
            epoch=epoch + 1,
            epochs=cfg.epochs,
            best_val_accuracy=best["val_accuracy"],
            images_per_sec=images_per_sec,
            resumed_from_epoch=start_epoch,
            # wall time per epoch of this launch, validation and checkpoints included
            seconds_per_epoch=(time.time() - loop_start) / (epoch + 1 - start_epoch),
            train_share=stats.seconds / (saved - started) if saved > started else None,
        )
        ended = time.perf_counter()
        timing = {
            "epoch_wall_seconds": ended - started,
            "eval_seconds": evaluated - trained,
            "checkpoint_seconds": saved - logged,
            "logging_seconds": (logged - evaluated) + (ended - saved),
        }
        # (these two writes and the log line fall after the epoch's clock: a few milliseconds)
        metrics.complete_last(**timing)
        board.add_timing(epoch + 1, timing)
        log.info(
            "%s  train_loss %.4f  train_acc %.4f  val_loss %.4f  val_acc %.4f  val_f1 %.4f  lr %.5f  "
            "%.1fs (%.0f img/s); epoch %.1fs: eval %.2fs, checkpoints %.2fs, logging %.2fs",
            label,
            stats.loss,
            stats.accuracy,
            val_loss,
            val_acc,
            val_f1,
            row["learning_rate"],
            stats.seconds,
            images_per_sec,
            timing["epoch_wall_seconds"],
            timing["eval_seconds"],
            timing["checkpoint_seconds"],
            timing["logging_seconds"],
        )
    board.close()

    if trainer.restore("best") is None:
        raise BenchmarkError(f"no best checkpoint in {rd.checkpoints}; delete the run directory and start again")
    test_x, test_y = data.split("test", cfg.limit.test)
    testing = time.perf_counter()
    with determinism_errors():
        test_loss, test_pred = trainer.predict(test_x, test_y)
    test_acc, test_f1 = classification_scores(test_y, test_pred, data.num_classes)
    test_seconds = time.perf_counter() - testing
    result = {
        "test_accuracy": test_acc,
        "test_macro_f1": test_f1,
        "test_loss": test_loss,
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "test_images": int(len(test_y)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(rd.test, result)
    write_json(
        rd.summary,
        {
            **summary,
            **performance_summary(metrics.rows, startup_seconds, trainer),
            "test_seconds": test_seconds,
            # this launch: process start -> test result (a resumed run's earlier launches are not in it)
            "launch_wall_seconds": time.time() - host.process_start_time(),
        },
    )
    log.info(
        "test (best epoch %d): test_accuracy %.4f  test_macro_f1 %.4f  -> %s",
        best["epoch"],
        test_acc,
        test_f1,
        rd.root,
    )
    return result
