"""The training loop (JoVE 67781 "Network and training"), one CPU or many GPUs.

Adam at ``optim.lr``; lr × ``lr_gamma`` every ``lr_step_epochs``; deep-supervision
weight ``alpha`` × ``alpha_gamma`` every ``alpha_step_epochs``; loss
``loss_3 + alpha (loss_0 + loss_1 + loss_2)``. Each epoch writes ``last.pt`` (exact
resume: model, optimizer, scheduler, AMP scaler, alpha, epoch, python/numpy/torch RNG),
``best.pt`` when the mean validation Dice improves, a CSV row in ``log.csv`` and
TensorBoard scalars (when tensorboard is installed). Only rank 0 writes.
``train.init_from`` starts from trained weights (:mod:`training.init_from`) instead of a
random init; a resumed run continues from its own ``last.pt`` instead.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.errors import TrainingError
from training import checkpoint as ckpt_io
from training import dataset as ds
from training.data import EpochSampler, WindowDataset, make_loader, prepare_split
from training.distributed import all_reduce_mean, barrier, init_distributed, resolve_device, shutdown
from training.losses import deep_supervision_loss
from training.model import build_model
from training.torch_import import require_torch

torch = require_torch("Training")
log = logging.getLogger(__name__)


def lr_at(epoch: int, optim) -> float:
    """Paper schedule: lr × gamma every ``lr_step_epochs`` (epoch 0-based)."""
    return optim.lr * optim.lr_gamma ** (epoch // optim.lr_step_epochs)


def alpha_at(epoch: int, optim) -> float:
    """Paper schedule: alpha from 0.8, × 0.8 every 30 epochs."""
    return optim.alpha * optim.alpha_gamma ** (epoch // optim.alpha_step_epochs)


@dataclass
class TrainResult:
    out: Path
    history: list[dict] = field(default_factory=list)
    best_score: float | None = None
    state_dict: dict = field(default_factory=dict)  # final weights (CPU), on every rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _validate(model, dataset, prepared, config, device) -> dict:
    from training.evaluate import evaluate_cases, summarise

    cases = dataset.split("val")
    per_case = evaluate_cases(model, dataset, cases, prepared, config, native_grid=False, device=device)
    table = summarise(per_case, dataset.split("train"))
    dices = [e["dice"] for e in table.values() if e["dice"] is not None]
    return {"table3": table, "per_case": per_case, "score": float(np.mean(dices)) if dices else None}


class _Logger:
    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled, self.csv_path, self.tb = enabled, out / "log.csv", None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # tensorboard is optional
                log.info("tensorboard not installed: CSV log only")

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not np.isnan(v):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), disable=not enabled,
                    transient=True)


def train(config, *, resume: bool = False, max_epochs: int | None = None) -> TrainResult:
    """Train per ``config``; ``resume`` continues from ``run.out/last.pt``; ``max_epochs``
    stops early after that many epochs in this call (simulates an interruption)."""
    run = config.run
    if run.torch_threads:
        torch.set_num_threads(run.torch_threads)
    ctx = init_distributed("cuda" if run.device == "cuda" or (run.device == "auto" and torch.cuda.is_available())
                           else "cpu")
    device = resolve_device(run.device, ctx)
    try:
        return _train(config, ctx, device, resume, max_epochs)
    finally:
        shutdown(ctx)


def _train(config, ctx, device, resume, max_epochs) -> TrainResult:
    run, optim_cfg, tcfg = config.run, config.optim, config.train
    out = Path(run.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.semantic_dict() | {"config_hash": config.hash},
                                                    indent=2) + "\n")
    seed_everything(tcfg.seed)
    dataset = ds.load(config.data.dataset)
    names = [config.data.labels[k] for k in sorted(config.data.labels)]
    if names != [dataset.labels[k] for k in sorted(dataset.labels)]:
        raise TrainingError(f"dataset labels {dataset.labels} differ from the config's {config.data.labels}")
    resuming = resume and (out / "last.pt").exists()
    model = build_model(config.semantic_dict()["model"], config.num_classes)
    if tcfg.init_from is not None and not resuming:  # before the data work: a mismatch fails fast
        from training.init_from import initialise, read_source

        source = read_source(tcfg.init_from)
        fresh = initialise(model, config, source)
        if ctx.is_main:
            print(f"initialised from {source.kind} {source.path} (sha256 {source.sha256[:12]}); "
                  f"{len(fresh)} deep-supervision tensors start fresh" if fresh else
                  f"initialised from {source.kind} {source.path} (sha256 {source.sha256[:12]})")
    model = model.to(device)
    cache = Path(run.cache_dir) if run.cache_dir else dataset.root / "cache"
    prep = max(1, run.num_workers)
    train_cases = prepare_split(dataset, "train", config.data.working_spacing_mm, cache, prep)
    val_cases = prepare_split(dataset, "val", config.data.working_spacing_mm, cache, prep) if ctx.is_main else []

    optimizer = torch.optim.Adam(model.parameters(), lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, optim_cfg.lr_step_epochs, optim_cfg.lr_gamma)
    use_amp = tcfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history, best, start_epoch, validation = [], None, 0, {}
    if resuming:  # the run's own weights, not --init-from's
        state = ckpt_io.load(out / "last.pt")
        if state["config_hash"] != config.hash:
            raise TrainingError(f"{out / 'last.pt'} was made with config {state['config_hash']}, "
                                f"not {config.hash}: resume needs the same config")
        model.load_state_dict(state["model"]["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best, start_epoch = list(state["history"]), state["best_score"], state["epoch"] + 1
        validation = dict(state["validation"])
    elif resume:
        log.info("no %s yet: starting from epoch 0", out / "last.pt")
    net = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    wds = WindowDataset(train_cases, config, tcfg.seed)
    sampler = EpochSampler(len(wds), ctx.rank, ctx.world_size)
    loader = make_loader(wds, sampler, tcfg.batch_size, run.num_workers, run.prefetch_factor,
                         pin_memory=device.type == "cuda")
    logger = _Logger(out, ctx.is_main)
    stop = tcfg.epochs if max_epochs is None else min(tcfg.epochs, start_epoch + max_epochs)
    if start_epoch:  # last, after every set-up step that might draw random numbers
        ckpt_io.set_rng_state(state["rng"])
    t_start, longest_epoch = time.perf_counter(), 0.0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed window shape: pick the fastest kernels once
    with _progress(run.progress and ctx.is_main) as progress:
        for epoch in range(start_epoch, stop):
            over = bool(run.time_limit_s) and epoch > start_epoch and \
                time.perf_counter() - t_start + longest_epoch > run.time_limit_s
            if run.time_limit_s and all_reduce_mean([float(over)], ctx, device)[0] > 0:  # same on every rank
                log.warning("stopping before epoch %d: run.time_limit_s %.0f s would be exceeded "
                            "(--resume continues)", epoch, run.time_limit_s)
                break
            t_epoch_all = time.perf_counter()
            alpha = alpha_at(epoch, optim_cfg)
            sampler.set_epoch(epoch)
            net.train()
            task = progress.add_task("train", total=len(loader), epoch=epoch, stats="")
            sums, n_batches, windows, wait_s = np.zeros(5), 0, 0, 0.0
            dice_sum, dice_n = np.zeros(config.num_classes), np.zeros(config.num_classes)
            t_epoch = time.perf_counter()
            t_fetch = time.perf_counter()
            for images, labels, annotated in loader:
                wait_s += time.perf_counter() - t_fetch
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = net(images)
                total, parts, dice = deep_supervision_loss(outputs, labels, annotated, alpha,
                                                           optim_cfg.dice_smooth, optim_cfg.batch_dice)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
                sums += [float(total.detach()), *parts]
                d = dice.cpu().numpy()
                dice_sum += np.nan_to_num(d)
                dice_n += ~np.isnan(d)
                n_batches += 1
                windows += images.shape[0]
                progress.update(task, advance=1, stats=f"loss {sums[0] / n_batches:.4f}")
                t_fetch = time.perf_counter()
            progress.remove_task(task)
            lr_used = optimizer.param_groups[0]["lr"]
            scheduler.step()
            elapsed = time.perf_counter() - t_epoch
            means = all_reduce_mean(list(sums / max(n_batches, 1)), ctx, device)
            row = {"epoch": epoch, "lr": lr_used, "alpha": alpha, "loss": means[0],
                   **{f"loss_{i}": means[1 + i] for i in range(4)},
                   **{f"train_dice_{names[k]}": (dice_sum[k] / dice_n[k] if dice_n[k] else float("nan"))
                      for k in range(config.num_classes)},
                   "windows_per_s": windows * ctx.world_size / elapsed,
                   "data_wait_share": wait_s / elapsed, "seconds": elapsed,
                   **{f"val_dice_{names[k]}": float("nan") for k in range(1, config.num_classes)}}
            is_best = False
            if ctx.is_main and val_cases and ((epoch + 1) % tcfg.val_every == 0 or epoch == tcfg.epochs - 1):
                validation = _validate(model, dataset, val_cases, config, device)
                for name, e in validation["table3"].items():
                    row[f"val_dice_{name}"] = e["dice"] if e["dice"] is not None else float("nan")
                if validation["score"] is not None and (best is None or validation["score"] > best):
                    best, is_best = validation["score"], True
            history.append({k: v for k, v in row.items()})
            if ctx.is_main:
                logger.write(row)
                state = ckpt_io.build_checkpoint(config, model, optimizer=optimizer, scheduler=scheduler,
                                                 scaler=scaler if use_amp else None, epoch=epoch, alpha=alpha,
                                                 best_score=best, validation=validation, history=history)
                ckpt_io.save(state, out / "last.pt")
                if is_best:
                    ckpt_io.save(state, out / "best.pt")
                val = {k[len("val_dice_"):]: v for k, v in row.items()
                       if k.startswith("val_dice_") and not np.isnan(v)}
                progress.console.print(
                    f"epoch {epoch}: loss {row['loss']:.4f} lr {lr_used:.2e} alpha {alpha:.3f} "
                    f"{row['windows_per_s']:.1f} windows/s data wait {row['data_wait_share']:.0%}"
                    + "".join(f" val {k} {v:.3f}" for k, v in val.items()) + (" (best)" if is_best else ""))
            barrier(ctx)
            longest_epoch = max(longest_epoch, time.perf_counter() - t_epoch_all)
    logger.close()
    return TrainResult(out, history, best, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
