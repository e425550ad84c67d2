"""Fit one model on one fold: the optimisation loop, epoch selection and prediction.

The reference implementation's recipe is the default: RAdam (lr 5e-4, weight decay 1e-3), a cosine schedule with
one warm-up epoch, 20 epochs, batch size 1, discrete-time NLL (alpha 0), and selection of the epoch with the
best validation C-index among epochs 10-20 (ties go to the later epoch).

Precision (``train.precision``, decided by :func:`training_precision` from the device's description): ``fp32``;
``bf16`` autocast; ``fp16`` autocast with a gradient scaler (:func:`grad_scaler`: the loss is scaled before the
backward pass, steps whose gradients overflow are skipped and the scale lowered); ``auto`` = bf16 for models that
read patch bags on hardware with native bf16 (CUDA compute capability >= 8.0, AVX512-BF16 / AMX CPUs), fp16 for
them on older GPUs (V100, T4: tensor cores without bf16), fp32 for everything else (small clinical / omics models
are slower under autocast). Whatever the precision, the loss and everything after the logits run in float32.

Devices (``train.device``, :func:`survpgc.devices.resolve_device`): the model moves there, batches are copied from
pinned memory without blocking (:func:`survpgc.devices.to_device`), and the selected weights come back as CPU
tensors, so a checkpoint written from a GPU run opens on a CPU-only machine. Inside a ``torch.distributed``
process group (``torchrun``, one process or many) the model trains under DistributedDataParallel (one GPU per
process: ``cuda:LOCAL_RANK``).

``train.init_hazard_bias`` (on by default: chosen by ``benchmarks/recipe.py``) starts the hazard head's bias at
the maximum-likelihood constant hazards of the training cases
(:func:`survpgc.survival.losses.constant_hazard_logits`): from the default hazard 0.5 per bin, an Adam-type
optimiser at lr 5e-4 moves a bias by about lr per step, so a short run learns which cases are worse but not the
baseline, and its survival curves are far below Kaplan-Meier.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from survpgc.config import TrainConfig
from survpgc.devices import device_caps, in_process_group, resolve_device, to_device
from survpgc.errors import ConfigError
from survpgc.survival.losses import nll_survival_loss

__all__ = [
    "AUTOCAST_DTYPES",
    "PRECISIONS",
    "FitResult",
    "bf16_supported",
    "cpu_state_dict",
    "fit",
    "grad_scaler",
    "init_hazard_bias",
    "predict",
    "train_step",
    "training_precision",
    "training_targets",
]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :func:`fit` returns: the selected epoch, the per-epoch history and the selected weights."""

    best_epoch: int
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]
    seconds: float
    precision: str
    selection: str
    extra: dict[str, Any] = field(default_factory=dict)


#: The precisions a fit runs in (``train.precision`` also takes ``auto``).
PRECISIONS = ("fp32", "bf16", "fp16")
#: The autocast dtype of each reduced precision (fp32: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 autocast is fast: CUDA with native bf16 (compute capability >= 8.0; emulated bf16 on
    older GPUs does not count), or a CPU with AVX512-BF16 / AMX."""
    return device_caps(device).bf16


def training_precision(precision: str, device_type: str, *, bf16_native: bool, reads_patches: bool) -> str:
    """The precision a fit runs in, from ``train.precision`` and a description of the device: ``fp32``,
    ``bf16`` or ``fp16`` as asked; for ``auto``:

    ============================  =======================  ==================
    device                        model reads patch bags   other models
    ============================  =======================  ==================
    CUDA with native bf16         bf16                     fp32
    CUDA without (V100, T4)       fp16 + gradient scaler   fp32
    CPU with AVX512-BF16 / AMX    bf16                     fp32
    other CPUs, MPS, ...          fp32                     fp32
    ============================  =======================  ==================

    bf16 autocast measured 1.5-2.2x faster for SurvPGC at 4096 patches with an unchanged C-index (README);
    small clinical / omics models are slower under autocast, so ``auto`` keeps them in fp32.
    """
    if precision in PRECISIONS:
        return precision
    if precision != "auto":
        raise ConfigError(f"train.precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if not reads_patches:
        return "fp32"
    if device_type == "cuda":
        return "bf16" if bf16_native else "fp16"
    if device_type == "cpu" and bf16_native:
        return "bf16"
    return "fp32"


def _precision(cfg: TrainConfig, device: torch.device, model: Any = None) -> str:
    """:func:`training_precision` for this device and model (hardware asked through :func:`bf16_supported`)."""
    reads_patches = "pathology" in getattr(model, "modalities", ())
    bf16 = bf16_supported(device) if cfg.precision == "auto" and reads_patches else False
    return training_precision(cfg.precision, device.type, bf16_native=bf16, reads_patches=reads_patches)


def _autocast_dtype(cfg: TrainConfig, device: torch.device, model: Any = None) -> torch.dtype | None:
    """The autocast dtype of :func:`_precision` (None: fp32)."""
    return AUTOCAST_DTYPES.get(_precision(cfg, device, model))


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The gradient scaler of a fit: active for fp16 (whose small gradients would flush to zero unscaled), a
    pass-through otherwise (``scale(loss)`` is the loss, ``step(opt)`` is ``opt.step()``)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.scheduler == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _forward(model, batch, autocast: torch.dtype | None, device: torch.device):
    if autocast is not None:
        with torch.autocast(device.type, dtype=autocast):
            return model(batch)
    return model(batch)


def _loss(out, batch: dict[str, Any], cfg: TrainConfig) -> torch.Tensor:
    loss = nll_survival_loss(out.logits.float(), batch["bin"], batch["event"], alpha=cfg.alpha)
    if cfg.beta > 0:
        if out.paths is None:
            raise ConfigError("train.beta > 0 (cosine loss) needs a model with two paths, such as survpgc")
        from survpgc.models.layers import cosine_path_loss

        a, b = (p.float() for p in out.paths)
        loss = (1.0 - cfg.beta) * loss + cfg.beta * cosine_path_loss(a, b, margin=cfg.cosine_margin)
    return loss


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Risk (higher = worse) and survival curves for every case of a loader, in loader order.

    ``precision``: ``fp32``, ``bf16``, ``fp16`` (autocast; outputs in float32 either way) or ``auto`` (bf16 on
    hardware with native bf16, else fp32).

    Returns ``{"case_id": list, "risk": (n,), "survival": (n, n_bins), "time": (n,), "event": (n,)}``.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if precision == "auto":
        precision = "bf16" if bf16_supported(dev) else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"predict: precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    autocast = AUTOCAST_DTYPES.get(precision)
    model.eval()
    ids, risks, survs, times, events = [], [], [], [], []
    for batch in loader:
        b = to_device(batch, dev)
        raw = _forward(model, b, autocast, dev)
        out = dataclasses.replace(raw, logits=raw.logits.float())  # metrics in float32 whatever the autocast
        logits = out.logits
        risks.append(out.risk.cpu().numpy().astype(np.float64))
        survs.append(
            out.survival.cpu().numpy().astype(np.float64) if out.discrete else np.full((len(logits), 0), np.nan)
        )
        ids += list(batch["case_id"])
        times.append(batch["time"].cpu().numpy().astype(np.float64))
        events.append(batch["event"].cpu().numpy().astype(bool))
    return {
        "case_id": ids,
        "risk": np.concatenate(risks) if risks else np.zeros(0),
        "survival": np.concatenate(survs) if survs else np.zeros((0, 0)),
        "time": np.concatenate(times) if times else np.zeros(0),
        "event": np.concatenate(events) if events else np.zeros(0, bool),
    }


def _val_cindex(pred: dict[str, Any]) -> float:
    from survpgc.errors import SurvpgcError
    from survpgc.survival.metrics import harrell_cindex

    try:
        return harrell_cindex(pred["time"], pred["event"], pred["risk"])
    except SurvpgcError:
        return float("nan")


def _ddp_kwargs(device: torch.device) -> dict[str, Any]:
    """DistributedDataParallel's device arguments: the process's one GPU, or none for CPU modules."""
    if device.type == "cuda":
        if device.index is None:
            raise ConfigError(f"DDP needs an indexed CUDA device (cuda:LOCAL_RANK), got {device}")
        return {"device_ids": [device.index], "output_device": device.index}
    return {"device_ids": None}


def _distributed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module to train: ``model`` itself, or inside a ``torch.distributed`` process group (of any size:
    ``torchrun --nproc-per-node 1`` runs the same code as many processes) a DDP wrapper (gradients averaged
    across processes; every process sees its own shard of the training cases and keeps identical weights)."""
    if not in_process_group():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, find_unused_parameters=True, **_ddp_kwargs(device))


def _set_epoch(loader: Iterable[dict[str, Any]], epoch: int) -> None:
    """Tell the dataset (patch sampling) and the sampler (DDP shards) which epoch starts."""
    for part in (getattr(loader, "dataset", None), getattr(loader, "sampler", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    device: torch.device,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    train_model: torch.nn.Module | None = None,
    epoch: int = 0,
) -> torch.Tensor:
    """One optimisation step of :func:`fit`: the batch to ``device``, forward under ``precision``'s autocast
    (through ``train_model``, e.g. a DDP wrapper of ``model``), the float32 loss, backward (scaled by
    ``scaler`` -- :func:`grad_scaler`, required for fp16), optional clipping of the unscaled gradients, the
    optimiser step. Returns the loss (detached, float32, on ``device``)."""
    if scaler is None:
        if precision == "fp16":
            raise ConfigError("train_step: fp16 needs a gradient scaler (grad_scaler(device, 'fp16'))")
        scaler = _NO_SCALER
    b = to_device(batch, device)
    out = _forward(train_model or model, b, AUTOCAST_DTYPES.get(precision), device)
    loss = _loss(out, b, cfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss at epoch {epoch} ({precision}); lower train.lr?")
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.max_grad_norm:
        scaler.unscale_(opt)  # clip the true gradients (a no-op without scaling)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    scaler.step(opt)  # skipped when an fp16 gradient overflowed
    scaler.update()
    return loss.detach()


_NO_SCALER = torch.amp.GradScaler("cpu", enabled=False)


def _train_epoch(train_model, model, loader, opt, sched, cfg: TrainConfig, device, precision: str, scaler,
                 epoch: int, counts: dict[str, int]) -> float:  # fmt: skip
    """One pass over the training loader; returns the mean training loss per case (``counts["skipped"]``
    counts the fp16 steps the gradient scaler skipped)."""
    import warnings

    model.train()
    total, n = 0.0, 0
    for batch in loader:
        before = scaler.get_scale() if scaler.is_enabled() else None
        loss = train_step(model, batch, opt, cfg, device=device, precision=precision, scaler=scaler,
                          train_model=train_model, epoch=epoch)  # fmt: skip
        if before is not None and scaler.get_scale() < before:
            counts["skipped"] = counts.get("skipped", 0) + 1
        with warnings.catch_warnings():  # a skipped fp16 step makes torch warn that the schedule ran first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            sched.step()
        total += loss.item() * len(batch["case_id"])
        n += len(batch["case_id"])
    return total / max(1, n)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights as contiguous CPU tensors (whatever device it trains on), so that the
    checkpoint of a GPU run opens on a CPU-only machine."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class _EpochSelection:
    """Keeps the weights of the best validation C-index among epochs ``window_start ..`` (ties: later)."""

    def __init__(self, window_start: int) -> None:
        self.window_start = window_start
        self.best: tuple[float, int] | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, epoch: int, score: float, model: torch.nn.Module) -> None:
        if epoch >= self.window_start and not math.isnan(score) and (self.best is None or score >= self.best[0]):
            self.best = (score, epoch)
            self.state = cpu_state_dict(model)

    def finish(self, model: torch.nn.Module, epochs: int) -> tuple[int, str, dict[str, torch.Tensor]]:
        """Leave ``model`` holding the selected weights; ``(epoch, how it was selected, weights)``."""
        if self.best is None:
            return epochs, "last epoch", cpu_state_dict(model)
        model.load_state_dict(self.state)
        return self.best[1], f"best validation C-index in epochs {self.window_start}-{epochs}", self.state


def training_targets(loader: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(bin (n,) int64, event (n,) bool)`` of every case of a training loader's dataset, in dataset order.

    The dataset's ``targets`` (a pair of arrays) where it has them; otherwise its items are read once, in this
    process, without the loader (its shuffling generator and the global RNG are left untouched; for patch bags
    that is one extra read of every feature file, dropped from the dataset's cache afterwards).
    """
    ds = getattr(loader, "dataset", loader)
    targets = getattr(ds, "targets", None)
    if targets is not None:
        bins, events = targets
        return np.asarray(bins, dtype=np.int64), np.asarray(events, dtype=bool)
    empty_cache = getattr(ds, "cache_size", None) == 0
    bins, events = [], []
    for i in range(len(ds)):
        item = ds[i]
        bins.append(int(item["bin"]))
        events.append(bool(item["event"]))
    if empty_cache and hasattr(ds, "clear_cache"):
        ds.clear_cache()  # the features this pass read stay out of this process's memory (workers keep their own)
    return np.asarray(bins, dtype=np.int64), np.asarray(events, dtype=bool)


def init_hazard_bias(model: torch.nn.Module, bins: Any, events: Any, *, alpha: float = 0.0) -> np.ndarray:
    """Set the bias of ``model``'s hazard head(s) (:func:`survpgc.models.heads.hazard_heads`) to the training
    cases' maximum-likelihood constant hazard logits; returns those logits (n_bins,)."""
    from survpgc.models.heads import set_hazard_bias
    from survpgc.survival.losses import constant_hazard_logits

    logits = constant_hazard_logits(bins, events, model.n_bins, alpha=alpha)
    names = set_hazard_bias(model, logits)
    log.info(
        "train.init_hazard_bias: %s bias set to the constant hazards %s of %d training cases",
        ", ".join(names),
        np.array2string(1.0 / (1.0 + np.exp(-logits)), precision=4),
        len(np.asarray(bins)),
    )
    return logits


def fit(
    model: torch.nn.Module,
    train_loader: Iterable[dict[str, Any]],
    val_loader: Iterable[dict[str, Any]] | None,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_loader`` and select an epoch on ``val_loader``.

    Selection: the epoch (1-based) with the highest validation Harrell C-index among epochs
    ``select_from_epoch .. epochs`` (clamped to the run's length), ties to the later epoch; with no
    validation loader (protocol ``last-epoch``) or no usable validation C-index, the last epoch. The model
    is left holding the selected weights. With ``cfg.init_hazard_bias`` the hazard head's bias first takes the
    constant hazards of the training loader's cases (:func:`init_hazard_bias`; ``extra["prior_logits"]``).
    """
    from survpgc.train._alloc import keep_large_allocations

    keep_large_allocations()  # big bags: reuse activation memory across steps (linear time in the bag size)
    device = resolve_device(cfg.device)
    model.to(device)
    precision = _precision(cfg, device, model)
    scaler = grad_scaler(device, precision)
    log.info("training on %s in %s", device, precision)
    extra: dict[str, Any] = {}
    if cfg.init_hazard_bias:  # before the seed: reading the targets must not shift the training's RNG
        extra["prior_logits"] = init_hazard_bias(model, *training_targets(train_loader), alpha=cfg.alpha).tolist()
    torch.manual_seed(cfg.seed)
    train_model = _distributed(model, device)
    opt = _make_optimizer(model, cfg)
    sched = _make_scheduler(opt, cfg, len(train_loader) if hasattr(train_loader, "__len__") else 1)
    selection = _EpochSelection(min(cfg.select_from_epoch, cfg.epochs))
    history: list[dict[str, float]] = []
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        _set_epoch(train_loader, epoch)
        loss = _train_epoch(train_model, model, train_loader, opt, sched, cfg, device, precision, scaler, epoch, counts)
        row = {"epoch": epoch, "train_loss": loss, "lr": opt.param_groups[0]["lr"]}
        if val_loader is not None:
            pred = predict(model, val_loader, device=device, precision=precision)
            row["val_cindex"] = _val_cindex(pred)
            model.train()
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        selection.offer(epoch, row.get("val_cindex", float("nan")), model)
    best_epoch, how, state = selection.finish(model, cfg.epochs)
    if scaler.is_enabled():
        extra["fp16_skipped_steps"] = counts.get("skipped", 0)
        log.info("fp16: the gradient scaler skipped %d step(s) (overflow)", extra["fp16_skipped_steps"])
    return FitResult(
        best_epoch=best_epoch,
        history=history,
        state_dict=state,
        seconds=time.perf_counter() - t0,
        precision=precision,
        selection=how,
        extra=extra,
    )
