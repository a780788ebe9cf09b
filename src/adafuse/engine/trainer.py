"""The training loop: loss ``CE + lambda * G`` (paper Eq. 6), SGD/AdamW + LR schedule, checkpoints, resume, DDP.

:func:`train` runs a whole training from a :class:`~adafuse.config.Config` and returns the best validation
metrics; :func:`evaluate_checkpoint` evaluates a checkpoint. Both work alone or under ``torchrun``.

Exact resume: the data order of an epoch is a function of ``(seed, epoch)``, a clip's augmentation of
``(seed, epoch, index)`` (:mod:`adafuse.engine.data`), and a checkpoint stores the batches of the current
epoch already consumed plus every process's RNG states, so a run killed anywhere and resumed from
``last.pt`` ends with the same weights as an uninterrupted run (bit-exact on CPU with the same threads).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adafuse.config import Config, ConfigError, load_config
from adafuse.data.errors import DataError
from adafuse.data.preprocessing import Preprocessing
from adafuse.engine import checkpoint as ckpt
from adafuse.engine.data import (
    EpochSampler,
    build_dataset,
    build_loader,
    check_inputs,
    check_num_classes,
    resolve_classes,
)
from adafuse.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
)
from adafuse.engine.evaluate import autocast_context, evaluate, summarize, write_eval
from adafuse.engine.metrics import RunLogger, RunningMeans, progress, setup_logging, topk_correct
from adafuse.engine.optim import LRSchedule, build_optimizer, ramp
from adafuse.flops import StaticCost, dynamic_gflops, loss_gflops, static_cost
from adafuse.models import build_model, builder_arguments, collect_masks, fusion_modules, unwrap
from adafuse.models.serialization import model_payload

log = logging.getLogger("adafuse")


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; ``last.pt`` still holds the last good state."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT: the current state was saved to ``last.pt``; rerun the same command to resume."""


class NonFiniteCheckpoint(ValueError):
    """A checkpoint whose weights/statistics, or whose logits on the data, hold NaN/inf."""


class PeerFailed(RuntimeError):
    """Another process of a distributed run failed (it prints its own error); this one stops too."""


class ResumeMismatch(ConfigError):
    """The checkpoint to resume from was written with a different config (the message lists the keys)."""


# keys whose change does not alter what a resumed run computes (plus every eval.* key)
HARMLESS_KEYS = frozenset({
    "optim.epochs", "run.log_every", "run.tensorboard", "run.progress", "run.threads", "run.resume", "run.device",
    "run.out_dir", "run.name", "data.num_workers", "data.root", "data.val_list", "train.eval_every",
    "train.checkpoint_every",
})


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["optim.lr: 0.02 in the checkpoint, 0.1 now", ...]`` for every non-harmless key that differs
    (keys the checkpoint's config does not have are not compared)."""
    out = []
    for section, values in current.items():
        old_section = saved.get(section) or {}
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if section == "eval" or dotted in HARMLESS_KEYS or key not in old_section:
                continue
            if old_section[key] != value:
                out.append(f"{dotted}: {old_section[key]!r} in the checkpoint, {value!r} now")
    return out


# ------------------------------------------------------------------------------------------ building


def run_dir_of(cfg: Config) -> Path:
    if not cfg.run.name:
        raise ValueError("run.name is not set (it defaults to the config file name)")
    return Path(cfg.run.out_dir) / cfg.run.name


def build_model_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """The model of ``cfg.model``, with ``input_spec.size = data.input_size``.

    ``model.kwargs`` keys that are not arguments of the model's builder are rejected (a typo there would
    otherwise be silently ignored); ``model.policy_hidden`` is ignored, with a warning, for models without
    a policy network.
    """
    m = cfg.model
    kwargs = dict(m.kwargs)
    accepted = builder_arguments(m.name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model.kwargs {unknown} are not arguments of model {m.name!r} "
                         f"(it takes: {', '.join(sorted(accepted))})")
    policy_hidden = m.policy_hidden
    if policy_hidden is not None and "policy_hidden" not in accepted:
        log.warning("model.policy_hidden=%s is ignored: %s has no policy network", policy_hidden, m.name)
        policy_hidden = None
    model = build_model(m.name, num_classes=num_classes, num_frames=m.num_frames, policy_hidden=policy_hidden,
                        pretrained=m.pretrained, dropout=m.dropout, **kwargs)
    model.input_spec = dataclasses.replace(model.input_spec, size=cfg.data.input_size)
    return model


def _budget_range(cfg: Config, model: nn.Module) -> tuple[float, float] | None:
    """``train.budget_range`` checked; enables the budget-conditioned policy of ``model`` when set."""
    r = cfg.train.budget_range
    if r is None:
        return None
    if len(r) != 2 or not 0.0 < r[0] <= r[1] <= 1.0:
        raise ValueError(f"train.budget_range must be [lo, hi] with 0 < lo <= hi <= 1, got {r}")
    if not fusion_modules(model):
        raise ValueError(f"train.budget_range needs a model with a policy; {cfg.model.name} has none")
    from adafuse.models.budget_conditioning import enable_budget_conditioning, set_budget_target

    enable_budget_conditioning(model)
    set_budget_target(model, (r[0] + r[1]) / 2)
    return float(r[0]), float(r[1])


def amp_dtype_for(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of ``train.amp`` on ``device`` (None = full precision)."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a GPU; use bf16 or off on CPU")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def _needs_unused_search(model: nn.Module, cfg: Config, cost: StaticCost) -> bool:
    """Probe one forward/backward on a copy of ``model``: True if some trainable parameter gets no gradient
    (DDP then needs ``find_unused_parameters=True``). RNG states are left untouched."""
    if cfg.train.find_unused_parameters != "auto":
        return cfg.train.find_unused_parameters == "true"
    probe = copy.deepcopy(model).cpu().train()
    with torch.random.fork_rng(devices=[]):
        size = min(cfg.data.input_size, 64)
        x = torch.randn(2, cfg.model.num_frames, 3, size, size)
        loss = probe(x).sum()
        masks = collect_masks(probe) if fusion_modules(probe) else []
        if masks:
            loss = loss + loss_gflops(cost, masks, cfg.model.num_frames, convention=cfg.train.flops_convention)
        loss.backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())




# ------------------------------------------------------------------------------------------ training


class _Stop:
    """SIGTERM/SIGINT flag (checked after every step, agreed on by all ranks)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._old = {}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second signal: give up at once
            raise KeyboardInterrupt
        self.requested = True
        log.warning("signal %d: stopping after this step and saving last.pt", signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """One training run (build with :meth:`setup`, run with :meth:`fit`)."""

    def __init__(self, cfg: Config, dist_info: DistInfo, force_resume: bool = False) -> None:
        self.cfg = cfg
        self.dist = dist_info
        self.force_resume = force_resume
        self.run_dir = run_dir_of(cfg)
        self.ckpt_dir = self.run_dir / ckpt.CHECKPOINT_DIR
        self.logger: RunLogger | None = None

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, resume_from: str | Path | None = None) -> None:
        cfg, d = self.cfg, self.dist
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        if cfg.run.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif d.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if cfg.data.batch_size % d.world_size:
            raise ValueError(f"data.batch_size={cfg.data.batch_size} is not divisible by the {d.world_size} processes")
        self.batch_per_rank = cfg.data.batch_size // d.world_size

        self.class_names = resolve_classes(cfg)
        self.num_classes = check_num_classes(cfg, self.class_names)
        ckpt.seed_everything(cfg.run.seed)  # identical initial weights on every rank
        model = build_model_from_config(cfg, self.num_classes)
        self.budget_range = _budget_range(cfg, model)
        self.cost = static_cost(model, cfg.data.input_size)
        self.gated = bool(fusion_modules(model))
        self.train_set = build_dataset(cfg, "train", self.num_classes, self.class_names, model.input_spec)
        self.val_set = build_dataset(cfg, "val", self.num_classes, self.class_names, model.input_spec) \
            if cfg.data.val_list else None
        drop_last = len(self.train_set) >= cfg.data.batch_size
        self.train_sampler = EpochSampler(len(self.train_set), True, cfg.run.seed, d.rank, d.world_size,
                                          self.batch_per_rank, drop_last)
        self.steps_per_epoch = math.ceil(len(self.train_sampler.epoch_indices()) / self.batch_per_rank)
        self.train_loader = build_loader(self.train_set, self.train_sampler, self.batch_per_rank,
                                         cfg.data.num_workers, cfg.run.seed)
        if self.val_set is not None:
            self.val_sampler = EpochSampler(len(self.val_set), False, 0, d.rank, d.world_size)
            self.val_loader = build_loader(self.val_set, self.val_sampler, cfg.eval.batch_size,
                                           cfg.data.num_workers, cfg.run.seed)

        model.to(d.device)
        self.model = model
        self.optimizer = build_optimizer(model, cfg.optim)
        self.schedule = LRSchedule(self.optimizer, cfg.optim, self.steps_per_epoch)
        self.amp_dtype = amp_dtype_for(cfg.train.amp, d.device)
        self.scaler = torch.amp.GradScaler(d.device.type, enabled=self.amp_dtype == torch.float16)

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_top1: float | None = None
        self.best_metrics: dict[str, Any] | None = None
        self.last_val: dict[str, Any] | None = None
        self.meter = RunningMeans()
        # per-rank randomness (Gumbel noise, dropout) after the shared initialisation
        ckpt.seed_everything(cfg.run.seed + 1_000_003 * d.rank)

        if d.is_main:  # holding the run's lock: leftovers of a killed process are ours to remove
            for folder in (self.ckpt_dir, self.run_dir / "eval"):
                for p in ckpt.remove_orphans(folder):
                    log.info("removed %s (left by an interrupted write)", p)
        source = Path(resume_from) if resume_from else self.ckpt_dir / ckpt.LAST
        if resume_from or (cfg.run.resume and source.is_file()):
            self._load(source)
            if d.is_main:
                self._truncate_metrics()

        self.ddp_model: nn.Module = model
        if d.distributed:
            find_unused = _needs_unused_search(model, cfg, self.cost)
            kwargs = {"device_ids": [d.device.index]} if d.device.type == "cuda" else {}
            self.ddp_model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused, **kwargs)

        if d.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
        self.logger = RunLogger(self.run_dir, d.is_main, cfg.run.tensorboard)
        self.show_progress = cfg.run.progress and d.is_main

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()

    def _truncate_metrics(self) -> None:
        """Drop ``metrics.jsonl`` records written after the resumed checkpoint (they will be written again)."""
        import json

        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept, dropped = [], 0
        for line in path.read_text().splitlines():
            try:
                step = json.loads(line).get("step")
            except ValueError:
                dropped += 1
                continue
            if isinstance(step, (int, float)) and step > self.global_step:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            tmp = path.with_name(".metrics.jsonl.tmp")
            tmp.write_text("".join(f"{x}\n" for x in kept))
            tmp.replace(path)
            log.info("metrics.jsonl: dropped %d records written after step %d (they are redone)", dropped,
                     self.global_step)

    def _load(self, path: Path) -> None:
        state = ckpt.load_training_checkpoint(path)
        saved_model = state.get("arch")
        if saved_model != self.cfg.model.name:
            raise ResumeMismatch(f"cannot resume from {path}: it holds a {saved_model!r} model but model.name is "
                                 f"{self.cfg.model.name!r} (use a new run.name, or run.resume=false to start over)")
        diffs = config_differences(state.get("config") or {}, self.cfg.to_dict())
        if diffs and not self.force_resume:
            raise ResumeMismatch(f"cannot resume from {path}: its config differs in {len(diffs)} key(s): "
                                 f"{'; '.join(diffs)}. Use a new run.name (or run.resume=false to start over), "
                                 "or --force-resume to continue with the new values")
        if diffs:
            log.warning("resuming from %s with a changed config (--force-resume): %s", path, "; ".join(diffs))
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state.get("epoch", 0))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.global_step = int(state.get("step", 0))
        self.best_top1 = state.get("best_top1")
        self.best_metrics = state.get("best_metrics")
        self.last_val = state.get("metrics")
        self.meter = RunningMeans(state.get("train_meter"))
        rng = state.get("rng") or {}
        ranks = rng.get("ranks", [])
        if len(ranks) == self.dist.world_size:
            ckpt.set_rng_state(ranks[self.dist.rank])
        else:
            log.warning("%s was written by %d processes, now %d: RNG streams are reseeded (training continues "
                        "but is not bit-identical to an uninterrupted run)", path, len(ranks), self.dist.world_size)
            ckpt.seed_everything(self.cfg.run.seed + 1_000_003 * self.dist.rank + self.global_step)
        log.info("resumed from %s: epoch %d, step %d of the epoch (global step %d)", path, self.epoch,
                 self.step_in_epoch, self.global_step)

    # -- checkpoints -----------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        pre = Preprocessing.from_config(self.cfg, unwrap(self.model).input_spec)
        payload = model_payload(self.model, self.class_names, pre.to_dict())
        payload.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.schedule.state_dict(),
            scaler=self.scaler.state_dict(),
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            step=self.global_step,
            config=self.cfg.to_dict(),
            best_top1=self.best_top1,
            best_metrics=self.best_metrics,
            metrics=self.last_val,
            train_meter=self.meter.state_dict(),
        )
        return payload

    def save(self, best: bool = False) -> None:
        """``last.pt`` (and ``best.pt``) for the current state, after checking the weights are finite."""
        finite, bad = ckpt.all_finite(self.model)
        flag = all_reduce_sum(torch.tensor([0.0 if finite else 1.0], dtype=torch.float64))  # every rank agrees
        if flag[0] > 0:
            what = f"{bad} is" if bad else "the weights of another process are"
            raise TrainingDiverged(f"{what} NaN/inf at epoch {self.epoch}, step {self.step_in_epoch}; nothing was "
                                   f"saved: {self.ckpt_dir / ckpt.LAST} keeps the last good state")
        ranks = all_gather_objects(ckpt.rng_state())  # every rank's streams (collective: all ranks call save)
        if not self.dist.is_main:
            return
        payload = self._payload()
        payload["rng"] = {"world_size": self.dist.world_size, "ranks": ranks}
        ckpt.save_atomic(payload, self.ckpt_dir / ckpt.LAST)
        if best:
            ckpt.save_atomic(payload, self.ckpt_dir / ckpt.BEST)

    # -- loop ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        log.info("run %s: %s, %d classes, %d train / %s val videos, %d steps/epoch x %d epochs, GFLOPs/video "
                 "dense %.3f (exact), params %.2fM, device %s x%d; FLOPs loss convention %s", self.run_dir,
                 cfg.model.name, self.num_classes,
                 len(self.train_set), len(self.val_set) if self.val_set is not None else 0, self.steps_per_epoch,
                 cfg.optim.epochs, self.cost.gflops_per_video, self.cost.params / 1e6, self.dist.device,
                 self.dist.world_size, cfg.train.flops_convention)
        with _Stop() as stop:
            while self.epoch < cfg.optim.epochs:
                self._train_epoch(stop)
                done = self.epoch + 1
                is_best = False
                if self.val_set is not None and (done % cfg.train.eval_every == 0 or done == cfg.optim.epochs):
                    metrics = self.validate()
                    self.last_val = metrics
                    self.logger.write({"kind": "val", "epoch": done, "step": self.global_step,
                                       **_scalar_view(metrics)}, self.global_step)
                    log.info("epoch %d val: top1 %.2f%%  top5 %.2f%%  GFLOPs/video %.4f (exact; released real %s, "
                             "upb %s)  policy(s/r/k) %s  skipped %d", done, metrics["top1"], metrics["top5"],
                             metrics["gflops_per_video"], _fmt_g(metrics.get("gflops_per_video_released_real")),
                             _fmt_g(metrics.get("gflops_per_video_released_upb")),
                             _fmt_ratios(metrics["policy_ratios"]), metrics["num_skipped"])
                    if metrics["num_nonfinite"]:
                        log.warning("epoch %d val: %d videos have non-finite logits: this epoch cannot be best",
                                    done, metrics["num_nonfinite"])
                    elif self.best_top1 is None or metrics["top1"] > self.best_top1:
                        self.best_top1, self.best_metrics, is_best = metrics["top1"], metrics, True
                self.epoch, self.step_in_epoch, self.meter = done, 0, RunningMeans()
                self.save(best=is_best or (self.val_set is None and done == cfg.optim.epochs))
        self.close()
        return self.best_metrics or self.last_val or {}

    def _next_batch(self, iterator: Any) -> dict[str, Any] | None:
        """The next batch (None at the end of the epoch). With several processes every step starts with one
        small all-reduce so that all agree: a process that failed to read its data raises its error and the
        others raise :class:`PeerFailed` (nobody waits in a collective for a dead peer), and a step in which
        some process has only unreadable clips (``on_error=skip``) is skipped by all."""
        failure: BaseException | None = None
        try:
            batch = next(iterator)
        except StopIteration:
            return None
        except DataError as err:
            batch, failure = None, err
        if not self.dist.distributed:
            if failure is not None:
                raise failure
            return batch
        empty = batch is not None and batch["video"] is None
        state = all_reduce_sum(torch.tensor([1.0 if failure is not None else 0.0, 1.0 if empty else 0.0,
                                             float(batch["num_skipped"]) if batch is not None else 0.0],
                                            dtype=torch.float64))
        if state[0] > 0:
            if failure is not None:
                raise failure
            raise PeerFailed(f"rank {self.dist.rank}: stopping because another process failed to read its data "
                             "(its error names the file)")
        if state[1] > 0 and not empty:
            log.warning("rank %d: step skipped by every process (another process had only unreadable clips); "
                        "%d readable clips of this process unused", self.dist.rank, batch["video"].shape[0])
        if state[1] > 0:
            return {**batch, "video": None, "num_skipped": int(state[2])}
        return batch

    def _train_epoch(self, stop: _Stop) -> None:
        cfg = self.cfg
        model = self.ddp_model
        model.train()
        self.train_sampler.set_epoch(self.epoch, self.step_in_epoch * self.batch_per_rank)
        t_epoch = time.time()
        batches = progress(self.train_loader, self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.optim.epochs}",
                           self.show_progress, initial=self.step_in_epoch)
        iterator = iter(batches)
        while (batch := self._next_batch(iterator)) is not None:
            if batch["video"] is None:  # every clip unreadable (on_error=skip): counted, no step
                self.meter.add("skipped", batch["num_skipped"])
                self.step_in_epoch += 1
                continue
            lr = self.schedule.set(self.epoch, self.step_in_epoch)
            progress_epochs = self.epoch + self.step_in_epoch / self.steps_per_epoch
            lam = cfg.train.flops_weight * ramp(progress_epochs, cfg.train.flops_warmup_epochs,
                                                cfg.train.flops_start_epoch)
            stats = self._step(model, batch, lam, stop)
            self.step_in_epoch += 1
            self.global_step += 1
            self._account(stats, lr, lam)
            if stats["stop"] > 0:  # agreed on by all ranks (summed in _step)
                self.save()
                raise TrainingInterrupted(f"stopped by a signal at epoch {self.epoch}, step {self.step_in_epoch}; "
                                          f"state saved to {self.ckpt_dir / ckpt.LAST}")
            if (cfg.train.checkpoint_every and self.global_step % cfg.train.checkpoint_every == 0
                    and self.step_in_epoch < self.steps_per_epoch):
                self.save()
        m = self.meter
        n = max(m.get("n"), 1.0)
        record = {"kind": "train_epoch", "epoch": self.epoch + 1, "step": self.global_step,
                  "loss": m.get("loss") / n, "ce": m.get("ce") / n, "flops": m.get("flops") / n,
                  "gflops_per_video": m.get("gflops") / n, "top1": 100 * m.get("c1") / n,
                  "top5": 100 * m.get("c5") / n, "lr": m.get("lr_last"), "lambda": m.get("lam_last"),
                  "skipped": int(m.get("skipped")), "seconds": time.time() - t_epoch}
        self.logger.write(record, self.global_step)
        log.info("epoch %d train: loss %.4f (ce %.4f + flops %.4f G/frame, %s)  top1 %.2f%%  GFLOPs/video %.4f "
                 "(exact)  lr %.5f  skipped %d", self.epoch + 1, record["loss"], record["ce"], record["flops"],
                 cfg.train.flops_convention, record["top1"], record["gflops_per_video"], record["lr"],
                 record["skipped"])

    def _step(self, model: nn.Module, batch: dict[str, Any], lam: float, stop: _Stop) -> dict[str, float]:
        d, cfg = self.dist, self.cfg
        video = batch["video"].to(d.device, non_blocking=True)
        labels = batch["label"].to(d.device, non_blocking=True)
        n = video.shape[0]
        target = 0.0
        if self.budget_range is not None:  # a target budget per batch, the same on every rank (seeded by step)
            from adafuse.models.budget_conditioning import set_budget_target

            lo, hi = self.budget_range
            target = float(np.random.default_rng([cfg.run.seed, self.global_step]).uniform(lo, hi))
            set_budget_target(self.model, target)
        with autocast_context(d.device, self.amp_dtype):
            logits = model(video)
        if self.budget_range is not None:  # validation and checkpoints see the middle of the range
            set_budget_target(self.model, sum(self.budget_range) / 2)
        logits = logits.float()
        ce = F.cross_entropy(logits, labels, label_smoothing=cfg.train.label_smoothing)
        if self.gated:
            masks = collect_masks(self.model)
            g = loss_gflops(self.cost, masks, cfg.model.num_frames, convention=cfg.train.flops_convention)
            with torch.no_grad():
                video_gflops = dynamic_gflops(self.cost, [m.detach() for m in masks], cfg.model.num_frames).mean()
            if self.budget_range is not None:  # distance of the spent fraction to this batch's target, same ramp
                ramp_factor = lam / cfg.train.flops_weight if cfg.train.flops_weight else 1.0
                dense = self.cost.total if cfg.train.flops_convention == "exact" else self.cost.released
                loss = ce + ramp_factor * cfg.train.budget_weight * (g / (dense / 1e9) - target).abs()
            else:
                loss = ce + lam * g
        else:
            dense = self.cost.total if cfg.train.flops_convention == "exact" else self.cost.released
            g = torch.tensor(dense / 1e9, device=d.device)
            video_gflops = g * cfg.model.num_frames
            loss = ce
        c1, c5 = topk_correct(logits.detach(), labels)
        finite = bool(torch.isfinite(loss.detach()))
        values = torch.tensor([float(ce.detach()) * n if finite else 0.0, float(g.detach()) * n if finite else 0.0,
                               float(loss.detach()) * n if finite else 0.0, float(video_gflops) * n, c1, c5, n,
                               0.0 if finite else 1.0, 1.0 if stop.requested else 0.0, batch["num_skipped"]],
                              dtype=torch.float64)
        all_reduce_sum(values)
        if values[7] > 0:
            raise TrainingDiverged(
                f"loss is not finite at epoch {self.epoch + 1}, step {self.step_in_epoch + 1} of the epoch (global "
                f"step {self.global_step + 1}; this rank: ce={float(ce.detach())}, flops={float(g.detach())}, "
                f"lambda={lam}). {self.ckpt_dir / ckpt.LAST} keeps the last good state; lower optim.lr, check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            total = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
            if not self.scaler.is_enabled() and not bool(torch.isfinite(total)):
                raise TrainingDiverged(
                    f"gradient norm is {float(total)} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; "
                    f"{self.ckpt_dir / ckpt.LAST} keeps the last good state")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        keys = ("ce", "flops", "loss", "gflops", "c1", "c5", "n", "nonfinite", "stop", "skipped")
        return dict(zip(keys, values.tolist(), strict=True))

    def _account(self, s: dict[str, float], lr: float, lam: float) -> None:
        for key in ("ce", "flops", "loss", "gflops", "c1", "c5", "n", "skipped"):
            self.meter.add(key, s[key])
        self.meter.sums["lr_last"] = lr
        self.meter.sums["lam_last"] = lam
        every = self.cfg.run.log_every
        if every and self.global_step % every == 0:
            n = max(s["n"], 1.0)
            self.logger.write({"kind": "train", "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                               "step": self.global_step, "loss": s["loss"] / n, "ce": s["ce"] / n,
                               "flops": s["flops"] / n, "gflops_per_video": s["gflops"] / n,
                               "top1": 100 * s["c1"] / n, "lr": lr, "lambda": lam}, self.global_step)

    def validate(self) -> dict[str, Any]:
        cfg = self.cfg
        self.val_sampler.set_epoch(0)
        records, skipped = evaluate(self.model, self.val_loader, self.cost, cfg.model.num_frames, self.dist,
                                    self.amp_dtype, cfg.eval.decision, cfg.eval.seed, self.show_progress)
        metrics = summarize(records, self.cost, cfg.model.name, cfg.run.name or "", self.class_names,
                            cfg.model.num_frames, cfg.data.input_size, _views(cfg))
        metrics["num_skipped"] = skipped
        self.model.train()
        return metrics


def _views(cfg: Config) -> int:
    return cfg.eval.num_clips * (3 if cfg.eval.three_crop else 1)


def _scalar_view(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("top1", "top5", "gflops_per_video", "ce", "num_videos", "policy_ratios", "block_ratios", "num_skipped")
    return {k: metrics[k] for k in keep if k in metrics}


def _fmt_g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_ratios(ratios: list[float] | None) -> str:
    return "-" if ratios is None else "/".join(f"{100 * r:.1f}" for r in ratios)


def lock_run_dir(run_dir: Path, dist_info: DistInfo) -> ckpt.RunLock | None:
    """Rank 0 takes the run directory's exclusive lock (:class:`~adafuse.engine.checkpoint.RunLock`) and tells
    the other ranks whether it got it; every rank raises :class:`~adafuse.engine.checkpoint.RunDirLocked`
    when another training holds the directory."""
    lock, message = None, None
    if dist_info.is_main:
        try:
            lock = ckpt.RunLock(run_dir).acquire()
        except ckpt.RunDirLocked as err:
            message = str(err)
    message = broadcast_object(message)
    if message is not None:
        raise ckpt.RunDirLocked(message)
    return lock


def train(cfg: Config, resume_from: str | Path | None = None, force_resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says (under torchrun: one call per process). Returns the best validation metrics.

    The run directory is locked for the whole training (a second trainer fails at once with
    :class:`~adafuse.engine.checkpoint.RunDirLocked`). Resuming from a checkpoint whose config differs in more
    than harmless keys (:data:`HARMLESS_KEYS`) raises :class:`ResumeMismatch` unless ``force_resume``.
    Raises :class:`TrainingDiverged` (NaN/inf; ``last.pt`` keeps the last good state),
    :class:`TrainingInterrupted` (SIGTERM/SIGINT; state saved) or :class:`PeerFailed` (another process of a
    distributed run failed). On an error no collective is entered, so no process waits for a dead peer.
    Every input file is checked first (:func:`~adafuse.engine.data.check_inputs`).
    """
    check_inputs(cfg)
    dist_info = init_distributed(cfg.run.device)
    run_dir = run_dir_of(cfg)
    lock = lock_run_dir(run_dir, dist_info)
    try:
        setup_logging(run_dir, dist_info.is_main)
        if lock is not None and lock.took_over:
            log.warning("took over the lock of %s: that process is no longer running",
                        ckpt.RunLock._describe(lock.took_over))
        trainer = Trainer(cfg, dist_info, force_resume)
        try:
            trainer.setup(resume_from)
            result = trainer.fit()
        finally:
            trainer.close()
        barrier()  # reached only when every rank finished (never on an error path)
        return result
    finally:
        if lock is not None:
            lock.release()


# ------------------------------------------------------------------------------------------ evaluation


def checkpoint_config(payload: dict[str, Any], config_path: str | Path | None,
                      overrides: list[str] | None) -> Config:
    """The config of an evaluation: the checkpoint's own config <- the given file <- overrides."""
    base = payload.get("config") or {}
    return load_config(config_path, overrides, base=base)


def default_eval_dir(checkpoint_path: Path) -> Path:
    """``<run>/eval`` for ``<run>/checkpoints/x.pt``, else ``eval`` next to the checkpoint file."""
    parent = checkpoint_path.resolve().parent
    run = parent.parent if parent.name == ckpt.CHECKPOINT_DIR else parent
    return run / "eval"


def load_for_eval(checkpoint_path: str | Path, config_path: str | Path | None = None,
                  overrides: list[str] | None = None) -> tuple[Config, Any, nn.Module, dict[str, Any]]:
    """A checkpoint ready to evaluate: ``(config, distributed info, model, payload)`` -- the checkpoint's
    config with ``config_path``/``overrides`` applied, the process group started, logging set up, the model
    rebuilt. Refuses (:class:`NonFiniteCheckpoint`) a checkpoint whose weights hold NaN/inf."""
    from adafuse.models.serialization import load_checkpoint_file, model_from_checkpoint

    checkpoint_path = Path(checkpoint_path)
    payload = load_checkpoint_file(checkpoint_path)
    cfg = checkpoint_config(payload, config_path, overrides)
    dist_info = init_distributed(cfg.run.device)
    setup_logging(None, dist_info.is_main)
    model, payload = model_from_checkpoint(payload, name=str(checkpoint_path))
    finite, bad = ckpt.all_finite(model)
    if not finite:
        raise NonFiniteCheckpoint(f"{checkpoint_path}: {bad} holds NaN/inf; the checkpoint cannot be evaluated "
                                  "(a diverged training?)")
    return cfg, dist_info, model, payload


def eval_preprocessing(cfg: Config, model: nn.Module, payload: dict[str, Any]) -> Preprocessing:
    """The preprocessing of an evaluation: :meth:`Preprocessing.from_config` of the evaluation's config (the
    checkpoint's own, so the checkpoint's stored preprocessing, unless a config file or overrides change it:
    then theirs, with a warning naming the difference)."""
    pre = Preprocessing.from_config(cfg, model.input_spec)
    stored = Preprocessing.of_checkpoint(payload)
    if pre != stored:
        a, b = stored.to_dict(), pre.to_dict()
        diff = ", ".join(f"{k} {a[k]} -> {b[k]}" for k in a if a[k] != b[k])
        log.warning("evaluating with a preprocessing other than the checkpoint's (%s); adafuse predict uses the "
                    "checkpoint's", diff)
    return pre


def evaluate_checkpoint(
    checkpoint_path: str | Path | None,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data.val_list``; writes ``predictions.jsonl`` and ``metrics.json`` to
    ``out_dir`` (default ``<run>/eval``) and returns the metrics. Works under torchrun (numbers independent
    of the number of processes)."""

    if checkpoint_path is None:
        if config_path is None:
            raise ValueError("give a config file or --checkpoint")
        cfg0 = load_config(config_path, overrides)
        checkpoint_path = run_dir_of(cfg0) / ckpt.CHECKPOINT_DIR / f"{cfg0.eval.checkpoint}.pt"
    checkpoint_path = Path(checkpoint_path)
    cfg, dist_info, model, payload = load_for_eval(checkpoint_path, config_path, overrides)
    check_inputs(cfg, required=("val",), optional=(), pretrained=False)
    if cfg.model.name != payload["arch"]:
        log.warning("config model.name=%s but the checkpoint holds %s: evaluating the checkpoint's model",
                    cfg.model.name, payload["arch"])
    class_names = payload.get("class_names")
    num_classes = model.num_classes
    data_classes = resolve_classes(cfg)
    if data_classes is not None and len(data_classes) != num_classes:
        raise ValueError(f"the checkpoint's model has {num_classes} classes but the data's class list has "
                         f"{len(data_classes)}")
    if class_names and data_classes and list(class_names) != list(data_classes):
        log.warning("class names of the checkpoint and of the data differ (same count %d)", num_classes)
    class_names = class_names or data_classes
    size = cfg.data.input_size
    cost = static_cost(model, size)
    preprocessing = eval_preprocessing(cfg, model, payload)
    dataset = build_dataset(cfg, "val", num_classes, class_names, model.input_spec, preprocessing)
    sampler = EpochSampler(len(dataset), False, 0, dist_info.rank, dist_info.world_size)
    loader = build_loader(dataset, sampler, cfg.eval.batch_size, cfg.data.num_workers, cfg.run.seed)
    model.to(dist_info.device)
    amp = amp_dtype_for(cfg.train.amp, dist_info.device)
    records, skipped = evaluate(model, loader, cost, cfg.model.num_frames, dist_info, amp, cfg.eval.decision,
                                cfg.eval.seed, cfg.run.progress)
    metrics = summarize(records, cost, payload["arch"], cfg.run.name or checkpoint_path.stem, class_names,
                        cfg.model.num_frames, size, _views(cfg))
    metrics.update(num_skipped=skipped, checkpoint=str(checkpoint_path), decision=cfg.eval.decision,
                   epoch=payload.get("epoch"), preprocessing=preprocessing.to_dict())
    if metrics["num_nonfinite"]:  # the same on every rank (computed from the gathered records)
        raise NonFiniteCheckpoint(f"{checkpoint_path}: {metrics['num_nonfinite']} of {metrics['num_videos']} videos "
                                  "have NaN/inf logits; no metrics written")
    out = Path(out_dir) if out_dir is not None else default_eval_dir(checkpoint_path)
    if dist_info.is_main:
        write_eval(out, records, metrics)
        (out / "config.yaml").write_text(cfg.to_yaml())
        log.info("eval %s: %d videos, top1 %.2f%%, top5 %.2f%%, GFLOPs/video %.4f (exact; released real %s, upb %s) "
                 "-> %s", checkpoint_path, metrics["num_videos"], metrics["top1"], metrics["top5"],
                 metrics["gflops_per_video"], _fmt_g(metrics.get("gflops_per_video_released_real")),
                 _fmt_g(metrics.get("gflops_per_video_released_upb")), out)
    metrics = broadcast_object(metrics)
    barrier()
    return metrics

