"""`cfviewer train`: train the demo classifier, then the autoencoder, on phantom radiographs.

* The training and validation sets are generated once (float16 in memory, cached as .npz in
  the work directory); seeds come from ``numpy.random.SeedSequence(config.seed)``.
* Every step is deterministic given (seed, stage, epoch, step): the shuffling, the
  augmentation and dropout draw from generators seeded from those numbers, so a resumed run
  continues exactly where the interrupted one stopped (and ends with the same weights).
* Checkpoints (model + optimizer + scheduler + history) go to the work directory every
  ``checkpoint_every`` steps, at each epoch end, and on Ctrl-C.
* After the classifier, per-pathology thresholds are chosen on the validation split
  (Youden's J, or 0.5 with ``thresholds: "fixed"``).
* ``init_from`` (a training config file) continues training: that config's bundle is trained
  first (or reused from the work directory when the bundle there was trained with exactly
  that config), and its classifier and autoencoder weights start this run, which trains on
  its own phantoms (give it another ``seed``). With ``autoencoder_training.epochs = 0`` the
  parent's autoencoder is kept as it is. Calibration composes (Platt on the calibrated logits),
  so the parent's calibration may stay in the weights.
* The bundle (bundle.json + classifier.pt + autoencoder.pt) is written to ``--out`` at the end,
  with a training summary in ``bundle.meta["training"]`` and the training domain (a reference
  distribution of the validation images, cfviewer.models.domain) in ``bundle.meta["domain"]``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfviewer import PATHOLOGIES
from cfviewer.device import resolve_device
from cfviewer.errors import CfviewerError
from cfviewer.models.autoencoder import ResNetAE, elastic_loss
from cfviewer.models.bundle import Bundle
from cfviewer.models.classifier import Classifier, count_parameters
from cfviewer.models.data import TrainingData, augment, check_render_scale, phantom_config, phantom_data
from cfviewer.models.evaluation import expected_calibration_error, platt_fit, roc_auc, youden_threshold

CHECKPOINT = "checkpoint.pt"


class TrainConfigError(CfviewerError):
    """The training configuration file is missing or has a bad value."""


class TrainingStopped(Exception):
    """Raised when ``stop_after_steps`` is reached (a checkpoint has been written)."""


@dataclass
class StageConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05


@dataclass
class TrainConfig:
    """Everything that determines the trained bundle (committed as train_config.json)."""

    resolution: int = 128
    seed: int = 0
    n_train: int = 8000
    n_val: int = 1000
    phantoms: dict[str, Any] = field(default_factory=dict)     # PhantomConfig overrides
    render_scale: int = 1              # render phantoms at this x resolution, resize as model_input does
    classifier: dict[str, Any] = field(default_factory=dict)   # Classifier kwargs
    autoencoder: dict[str, Any] = field(default_factory=dict)  # ResNetAE kwargs
    classifier_training: StageConfig = field(default_factory=StageConfig)
    autoencoder_training: StageConfig = field(default_factory=lambda: StageConfig(epochs=5))
    ae_l2_weight: float = 1.0
    label_smoothing: float = 0.0       # BCE targets y(1-s) + s/2: keeps logits off saturation
    adversarial: dict[str, float] = field(default_factory=dict)  # {"epsilon": RMS, "steps": k}: see robust_classifier_loss
    calibration: str = "none"          # "platt": per-pathology logistic calibration on the validation split
    ae_classifier_weight: float = 0.0  # optional classifier-consistency term (0 = paper's loss)
    augment: dict[str, float] = field(default_factory=dict)    # data.augment kwargs
    augment_autoencoder: bool = True
    thresholds: str = "youden"                                  # or "fixed" (0.5)
    checkpoint_every: int = 200
    num_threads: int | None = None
    resolution_note: str = ""
    autoencoder_note: str = ""
    classifier_note: str = ""
    init_from: str = ""                # training config (JSON) whose bundle starts this run: see run_training
    reconstruction_fraction: float = 0.0  # share of each classifier batch shown as D(E(x)) (needs init_from)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known - {"$comment"})
        if unknown:
            raise TrainConfigError(
                f"{source}: unknown key(s) {unknown}; known keys: {', '.join(sorted(known))}"
            )
        kwargs = {k: v for k, v in doc.items() if k in known}
        for stage in ("classifier_training", "autoencoder_training"):
            if stage in kwargs:
                sub = kwargs[stage]
                stage_known = {f.name for f in dataclasses.fields(StageConfig)}
                if not isinstance(sub, dict) or set(sub) - stage_known:
                    raise TrainConfigError(
                        f"{source}: {stage} must be an object with keys among "
                        f"{', '.join(sorted(stage_known))}"
                    )
                kwargs[stage] = StageConfig(**sub)
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"training config {path} not found; pass --config FILE")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TrainConfigError(f"training config {path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise TrainConfigError(f"training config {path} must hold a JSON object")
        return cls.from_dict(doc, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    LATER_KEYS = ("init_from", "reconstruction_fraction")
    """Keys added after bundles were first trained: left out of the fingerprints while they
    hold their defaults, so a config that does not use them keeps its fingerprint."""

    def _fingerprint_doc(self, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        d = self.to_dict()
        defaults = TrainConfig().to_dict()
        doc = {k: d[k] for k in (keys or d)}
        return {k: v for k, v in doc.items() if not (k in self.LATER_KEYS and v == defaults[k])}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self._fingerprint_doc(), sort_keys=True).encode()).hexdigest()[:16]

    CLASSIFIER_KEYS = ("resolution", "seed", "n_train", "n_val", "phantoms", "render_scale", "classifier",
                       "classifier_training", "augment", "label_smoothing", "adversarial", "init_from",
                       "reconstruction_fraction")

    def classifier_fingerprint(self) -> str:
        """Hash of the settings the classifier stage depends on: a checkpoint whose classifier
        was trained with the same ones is reused when only autoencoder settings changed."""
        doc = self._fingerprint_doc(self.CLASSIFIER_KEYS)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self, source: str = "config") -> None:
        def bad(msg: str) -> TrainConfigError:
            return TrainConfigError(f"{source}: {msg}")

        ae = ResNetAE(**self.autoencoder) if self.autoencoder is not None else None
        if not 32 <= self.resolution <= 1024:
            raise bad(f"resolution {self.resolution} must be between 32 and 1024")
        if ae is not None and self.resolution % ae.downsampling:
            raise bad(
                f"resolution {self.resolution} must be divisible by {ae.downsampling} "
                f"(the autoencoder has {len(ae.config()['widths'])} x2 levels)"
            )
        try:
            check_render_scale(self.render_scale)
        except ValueError as exc:
            raise bad(str(exc)) from None
        try:
            phantom_config(self.resolution * self.render_scale, self.phantoms)
        except (TypeError, ValueError) as exc:
            raise bad(f"phantoms: {exc}") from None
        if self.n_train < 2 or self.n_val < 2:
            raise bad("n_train and n_val must be at least 2")
        for name in ("classifier_training", "autoencoder_training"):
            st: StageConfig = getattr(self, name)
            if st.epochs < 0 or st.batch_size < 1 or st.lr <= 0:
                raise bad(f"{name}: epochs >= 0, batch_size >= 1 and lr > 0 are required")
        if self.ae_classifier_weight < 0:
            raise bad("ae_classifier_weight must be >= 0")
        if self.thresholds not in ("youden", "fixed"):
            raise bad(f"thresholds {self.thresholds!r}: use 'youden' or 'fixed'")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad(f"label_smoothing {self.label_smoothing}: use a value in [0, 1)")
        unknown = sorted(set(self.adversarial) - {"epsilon", "steps", "clean_weight"})
        if unknown:
            raise bad(f"adversarial: unknown key(s) {unknown}; known: epsilon, steps, clean_weight")
        if float(self.adversarial.get("epsilon", 0.0)) < 0 or int(self.adversarial.get("steps", 1)) < 1:
            raise bad("adversarial: epsilon must be >= 0 and steps >= 1")
        if not 0.0 <= float(self.adversarial.get("clean_weight", 0.5)) <= 1.0:
            raise bad("adversarial: clean_weight must be in [0, 1]")
        if self.init_from and not Path(self.init_from).is_file():
            raise bad(f"init_from {self.init_from!r}: no such training config file; give its path "
                      "relative to the working directory (or remove init_from to train from scratch)")
        if not 0.0 <= self.reconstruction_fraction <= 1.0:
            raise bad(f"reconstruction_fraction {self.reconstruction_fraction}: use a value in [0, 1]")
        if self.reconstruction_fraction > 0 and not self.init_from:
            raise bad("reconstruction_fraction needs a trained autoencoder before the classifier "
                      "stage: set init_from to the training config whose bundle provides it")
        if self.calibration not in ("none", "platt"):
            raise bad(f"calibration {self.calibration!r}: use 'none' or 'platt'")

    def data_seeds(self) -> dict[str, int]:
        """Dataset seeds of the training and validation splits (SeedSequence children)."""
        words = np.random.SeedSequence(self.seed).generate_state(4, dtype=np.uint32)
        return {
            "train": int(words[0]),
            "val": int(words[1]),
            "classifier_init": int(words[2]),
            "autoencoder_init": int(words[3]),
        }


# ---------------------------------------------------------------------- generic loop
def _step_seed(seed: int, stage: str, epoch: int, step: int) -> int:
    ss = np.random.SeedSequence([seed, sum(map(ord, stage)), epoch, step + 1])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def _lr_lambda(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warm = max(1, int(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return float(0.5 * (1 + np.cos(np.pi * min(1.0, t))))

    return f


@dataclass
class StageResult:
    history: list[dict[str, float]]
    seconds: float
    steps: int


class Checkpointer:
    """Saves/loads the training state of one run in ``work_dir/checkpoint.pt``."""

    def __init__(self, work_dir: Path, fingerprint: str, classifier_fingerprint: str | None = None):
        self.path = Path(work_dir) / CHECKPOINT
        self.fingerprint = fingerprint
        self.classifier_fingerprint = classifier_fingerprint
        self.reused_classifier = False

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise TrainConfigError(
                f"checkpoint {self.path} is unreadable ({exc}); delete it or run without --resume"
            ) from None
        if state.get("fingerprint") != self.fingerprint:
            finished = state.get("finished", {})
            if (self.classifier_fingerprint is not None
                    and state.get("classifier_fingerprint") == self.classifier_fingerprint
                    and "classifier" in finished):
                # only autoencoder settings changed: keep the trained classifier
                self.reused_classifier = True
                return {"stage": "autoencoder-start", "finished": {"classifier": finished["classifier"]}}
            raise TrainConfigError(
                f"checkpoint {self.path} belongs to another training config; run without "
                "--resume to start over (or restore the config it was made with)"
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {**state, "fingerprint": self.fingerprint,
                 "classifier_fingerprint": self.classifier_fingerprint}
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    data: TrainingData,
    stage_cfg: StageConfig,
    *,
    stage: str,
    seed: int,
    device: torch.device,
    augment_kwargs: Mapping[str, float] | None = None,
    use_augment: bool = True,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    resume_state: dict[str, Any] | None = None,
    save_state: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 200,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> StageResult:
    """Train ``model`` for ``stage_cfg.epochs`` epochs with AdamW + warm-up/cosine schedule.

    ``resume_state`` (from a checkpoint of this stage) restores model/optimizer/scheduler and
    the position; ``save_state(state)`` is called every ``checkpoint_every`` steps, at epoch
    ends and on KeyboardInterrupt. ``stop_after_steps`` (global step count) saves and raises
    TrainingStopped, which simulates an interruption (tests)."""
    n = len(data)
    bs = min(stage_cfg.batch_size, n)
    steps_per_epoch = n // bs
    total = steps_per_epoch * stage_cfg.epochs
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=stage_cfg.lr, weight_decay=stage_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, stage_cfg.warmup_fraction))
    epoch, step_in_epoch, history, seconds = 0, 0, [], 0.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        epoch, step_in_epoch = int(resume_state["epoch"]), int(resume_state["step_in_epoch"])
        history = list(resume_state["history"])
        seconds = float(resume_state["seconds"])
    t0 = time.perf_counter() - seconds
    running: list[float] = list(resume_state.get("running", [])) if resume_state else []

    def state() -> dict[str, Any]:
        return {
            "stage": stage,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "history": history,
            "running": running,
            "seconds": time.perf_counter() - t0,
        }

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=epoch * steps_per_epoch + step_in_epoch, desc=stage,
                   unit="step", dynamic_ncols=True, miniters=1, mininterval=1.0)
    try:
        while epoch < stage_cfg.epochs:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(
                _step_seed(seed, stage, epoch, -1)))
            model.train()
            while step_in_epoch < steps_per_epoch:
                gstep = epoch * steps_per_epoch + step_in_epoch
                if stop_after_steps is not None and gstep >= stop_after_steps:
                    if save_state:
                        save_state(state())
                    raise TrainingStopped(f"{stage}: stopped after {gstep} steps")
                s = _step_seed(seed, stage, epoch, step_in_epoch)
                torch.manual_seed(s)  # dropout
                gen = torch.Generator().manual_seed(s)
                idx = perm[step_in_epoch * bs : (step_in_epoch + 1) * bs]
                x = data.images[idx].to(device=device, dtype=torch.float32)[:, None]
                y = data.labels[idx].to(device)
                if use_augment:
                    x = augment(x, gen, **(augment_kwargs or {}))
                loss = loss_fn(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running.append(float(loss.detach()))
                step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(running[-50:]):.4f}")
                if save_state and checkpoint_every and (gstep + 1) % checkpoint_every == 0:
                    save_state(state())
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(running)) if running else float("nan")}
            if evaluate is not None:
                model.eval()
                record.update(evaluate(model))
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            running = []
            if bar is not None:
                bar.write(f"{stage} epoch {epoch + 1}/{stage_cfg.epochs}: "
                          + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
            epoch += 1
            step_in_epoch = 0
            if save_state:
                save_state(state())
    except KeyboardInterrupt:
        if save_state:
            save_state(state())
        raise
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return StageResult(history=history, seconds=time.perf_counter() - t0, steps=total)


# ---------------------------------------------------------------------- losses / evaluation
def classifier_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model.logits(x), y)


def l2_adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon_rms: float,
                 steps: int = 1) -> torch.Tensor:
    """Projected gradient ascent on the BCE in an L2 ball (Madry et al. 2018, the L2 threat
    model of the "robust features" literature): radius = ``epsilon_rms`` x sqrt(pixels), i.e.
    ``epsilon_rms`` is the perturbation's root-mean-square per pixel in image units (1024 =
    half the range), so the same value means the same visibility at every resolution.
    ``steps`` = 1 is the fast L2 gradient method (step = the radius); more steps use
    2.5 x radius / steps with projection. Batch-norm layers run in eval mode while attacking,
    so the attack does not move their running statistics; the result is detached."""
    if epsilon_rms <= 0:
        return x
    radius = float(epsilon_rms) * float(np.sqrt(x[0].numel()))
    was_training = model.training
    model.eval()
    delta = torch.zeros_like(x, requires_grad=True)
    alpha = radius if steps == 1 else 2.5 * radius / steps
    for _ in range(int(steps)):
        loss = F.binary_cross_entropy_with_logits(model.logits(x + delta), y)
        (g,) = torch.autograd.grad(loss, delta)
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        d = delta.detach() + alpha * g / norm
        dn = d.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        d = d * torch.clamp(radius / dn.clamp_min(1e-12), max=1.0)
        delta = d.requires_grad_(True)
    model.train(was_training)
    return (x + delta).clamp(-1024.0, 1024.0).detach()


def robust_classifier_loss(label_smoothing: float = 0.0, adversarial: Mapping[str, float] | None = None,
                           reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None,
                           reconstruction_fraction: float = 0.0,
                           ) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The classifier's training loss: BCE on logits with label smoothing (targets
    y (1 - s) + s / 2), on a batch whose first ``reconstruction_fraction`` (batches are in
    random order) is replaced by ``reconstruct(x)`` = D(E(x)) of a frozen autoencoder, with the
    same labels: the classifier learns to read the autoencoder's images too, so along Latent
    Shift's path its gradient is not a response to the reconstruction's missing fine texture
    (issue 10: "training on images and their reconstructions"). Optionally mixed with the BCE on L2 adversarial examples
    (:func:`l2_adversary`; ``clean_weight`` x clean + (1 - clean_weight) x adversarial, 0.5 by
    default). Adversarial training is what gives a classifier "perceptually aligned" input
    gradients (Santurkar et al. 2019; Tsipras et al. 2019): its gradient through the
    autoencoder's decoder then points at the finding instead of at vessel edges, which is what
    Latent Shift (and every gradient explainer) needs."""
    adv = dict(adversarial or {})
    eps = float(adv.get("epsilon", 0.0))
    steps = int(adv.get("steps", 1))
    clean_w = float(adv.get("clean_weight", 0.5))
    s = float(label_smoothing)

    k_frac = float(reconstruction_fraction) if reconstruct is not None else 0.0

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = y * (1.0 - s) + 0.5 * s if s else y
        k = int(round(k_frac * x.shape[0]))
        if k:
            with torch.no_grad():
                x = torch.cat([reconstruct(x[:k]).clamp(-1024, 1024), x[k:]])
        clean = F.binary_cross_entropy_with_logits(model.logits(x), t)
        if eps <= 0:
            return clean
        xa = l2_adversary(model, x, t, eps, steps)
        return clean_w * clean + (1.0 - clean_w) * F.binary_cross_entropy_with_logits(model.logits(xa), t)

    return loss


def autoencoder_loss(
    l2_weight: float, classifier: nn.Module | None = None, classifier_weight: float = 0.0
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Elastic-net reconstruction loss (Latent Shift paper); with ``classifier_weight`` > 0 plus
    a classifier-consistency term: BCE between the frozen classifier's probabilities on D(E(x))
    and on x, so that reconstructions keep what the classifier sees."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        recon = model(x)
        value = elastic_loss(recon, x, l2_weight=l2_weight)
        if classifier is not None and classifier_weight > 0:
            with torch.no_grad():
                target = classifier(x)
            value = value + classifier_weight * F.binary_cross_entropy_with_logits(
                classifier.logits(recon), target)
        return value

    return loss


@torch.no_grad()
def predict_tensor(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Probabilities of a classifier on N x R x R images (any float dtype)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device=device, dtype=torch.float32)[:, None]
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def reconstruct_tensor(ae: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    ae.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device=device, dtype=torch.float32)[:, None]
        out.append(ae(x)[:, 0].float().cpu())
    return torch.cat(out)


def per_pathology_auc(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict[str, float]:
    return {p: roc_auc(labels[:, i], probs[:, i]) for i, p in enumerate(names)}


@torch.no_grad()
def calibrate_classifier(clf: Classifier, val: TrainingData, device: torch.device) -> dict[str, Any]:
    """Platt-scale each output on the validation split (:func:`platt_fit` on its logits) and
    fold (a, b) into the model, so ``forward`` returns calibrated probabilities
    and ``logits`` the calibrated log-odds (a gradient explainer sees the same direction, scaled
    by a > 0; :meth:`Classifier.calibrate`). Returns the fitted (a, b) and the validation ECE before and after."""
    clf.eval()
    logits = []
    for i in range(0, len(val), 64):
        x = val.images[i : i + 64].to(device=device, dtype=torch.float32)[:, None]
        logits.append(clf.logits(x).float().cpu())
    z = torch.cat(logits).numpy()
    y = val.labels.numpy()
    out: dict[str, Any] = {"method": "platt", "per_pathology": {}}
    for i, p in enumerate(clf.pathologies):
        a, b = platt_fit(y[:, i], z[:, i])
        if not a > 0:  # an inverted fit would flip the classifier: keep it as it is
            a, b = 1.0, 0.0
        before = expected_calibration_error(y[:, i], 1 / (1 + np.exp(-z[:, i])))
        after = expected_calibration_error(y[:, i], 1 / (1 + np.exp(-(a * z[:, i] + b))))
        clf.calibrate(i, a, b)
        out["per_pathology"][p] = {"a": a, "b": b, "val_ece_before": before, "val_ece_after": after}
    return out


# ---------------------------------------------------------------------- the whole run
def parent_bundle(config: TrainConfig, work: Path, *, resume: bool, device: torch.device,
                  progress: bool, log: Callable[[str], None]) -> Bundle:
    """The bundle of ``config.init_from`` (a training config file): reused from
    ``work/init_from/<fingerprint>`` when the bundle there was trained with exactly that
    config, else trained there (resumable like any run)."""
    parent_cfg = TrainConfig.from_json(config.init_from)
    if parent_cfg.init_from and Path(parent_cfg.init_from).resolve() == Path(config.init_from).resolve():
        raise TrainConfigError(f"{config.init_from}: init_from names its own file")
    out = work / "init_from" / parent_cfg.fingerprint()
    if (out / "bundle.json").is_file():
        b = Bundle.load(out, device=device)
        if _same_config(b.meta.get("training", {}).get("config"), parent_cfg):
            log(f"init_from: reusing the bundle of {config.init_from} in {out}")
            return b
    log(f"init_from: training the bundle of {config.init_from} first (into {out})")
    return run_training(parent_cfg, out, resume=resume, device=device, work_dir=out / "work",
                        progress=progress, log=log)


def training_chain(training: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The training records of every stage of an ``init_from`` chain, oldest first, from
    ``bundle.meta["training"]`` (one entry for a bundle trained in one run)."""
    stages: list[Mapping[str, Any]] = []
    t = training if isinstance(training, Mapping) else None
    while isinstance(t, Mapping) and len(stages) < 16:
        stages.append(t)
        parent = t.get("init_from")
        t = parent.get("training") if isinstance(parent, Mapping) else None
        # run_training records a parent as {config_file, training (without its init_from),
        # init_from}: the grandparent sits beside the parent's training record
        if isinstance(t, Mapping) and "init_from" not in t and isinstance(parent.get("init_from"), Mapping):
            t = {**t, "init_from": parent["init_from"]}
    return stages[::-1]


def training_splits(training: Mapping[str, Any] | None) -> list[tuple[str, int, int]]:
    """(split, dataset seed, number of images) of every phantom set a bundle was trained or
    validated on, from ``bundle.meta["training"]``: this run's and, with ``init_from``, its
    parent's (recursively, labelled "stage 1 train", ...). Held-out evaluations must avoid all."""
    stages = training_chain(training)
    out = []
    for i, st in enumerate(stages):
        ds = st.get("data_seeds") or {}
        label = f"stage {i + 1} " if len(stages) > 1 else ""
        for split, n_key in (("train", "n_train"), ("val", "n_val")):
            seed, n = ds.get(split), st.get(n_key)
            if isinstance(seed, int) and isinstance(n, int) and n > 0:
                out.append((f"{label}{split}", seed, n))
    return out


def _same_config(recorded: Mapping[str, Any] | None, config: TrainConfig) -> bool:
    """Was a bundle trained with ``config``? (keys added to TrainConfig since it was trained
    count as their defaults)."""
    if not isinstance(recorded, Mapping):
        return False
    defaults = TrainConfig().to_dict()
    want = config.to_dict()
    return set(recorded) <= set(want) and all(recorded.get(k, defaults[k]) == v for k, v in want.items())


def _load_parent_weights(model: nn.Module, parent: nn.Module | None, role: str, source: str) -> None:
    if parent is None:
        raise TrainConfigError(f"init_from {source}: its bundle has no {role}")
    try:
        model.load_state_dict(parent.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise TrainConfigError(
            f"init_from {source}: its {role} does not fit this config's {role} settings "
            f"({first}); use the same '{role}' settings as {source}") from None


def default_work_dir(out_dir: Path) -> Path:
    from cfviewer.paths import work_cache_dir

    return work_cache_dir("train", out_dir)


def _measure_step_ms(model_fn: Callable[[], nn.Module], loss_fn, resolution: int, batch: int,
                     device: torch.device, repeats: int = 3) -> float:
    """Median ms per image of one training step (forward + backward + AdamW) on random input."""
    model = model_fn().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, resolution, resolution, device=device) * 2048 - 1024
    y = torch.zeros(batch, len(PATHOLOGIES), device=device)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return float(np.median(times) / batch * 1000)


def run_training(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "auto",
    work_dir: str | Path | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
    data: tuple[TrainingData, TrainingData] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Bundle:
    """Train classifier then autoencoder as configured and save the bundle to ``out_dir``.

    ``data`` = (train, val) overrides the phantom data (tests). ``stop_after_steps`` stops the
    classifier stage after that many steps (or, when larger than the classifier's step count,
    the autoencoder stage after the remainder) with a checkpoint: TrainingStopped."""
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else default_work_dir(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    seeds = config.data_seeds()
    ckpt = Checkpointer(work, config.fingerprint(), config.classifier_fingerprint())
    saved = ckpt.load() if resume else None
    if resume and saved is None:
        log(f"no checkpoint in {work}: starting from the beginning")
    if ckpt.reused_classifier:
        log("only autoencoder settings changed since the checkpoint: reusing its trained "
            "classifier, training the autoencoder from the beginning")
    if not resume and ckpt.path.exists():
        ckpt.path.unlink()
    run_t0 = time.perf_counter()

    # ---- data
    t = time.perf_counter()
    if data is None:
        train = phantom_data(config.n_train, seeds["train"], config.resolution, config.phantoms,
                             cache_dir=work, progress=progress, desc="training phantoms",
                             render_scale=config.render_scale, n_jobs=config.num_threads or 1)
        val = phantom_data(config.n_val, seeds["val"], config.resolution, config.phantoms,
                           cache_dir=work, progress=progress, desc="validation phantoms",
                           render_scale=config.render_scale, n_jobs=config.num_threads or 1)
    else:
        train, val = data
    data_seconds = time.perf_counter() - t
    if train.resolution != config.resolution or val.resolution != config.resolution:
        raise TrainConfigError(
            f"training data is {train.resolution} px but the config says {config.resolution}"
        )
    pathologies = list(config.classifier.get("pathologies", PATHOLOGIES))
    if train.labels.shape[1] != len(pathologies):
        raise TrainConfigError(
            f"training labels have {train.labels.shape[1]} columns, the classifier predicts "
            f"{len(pathologies)} ({', '.join(pathologies)})"
        )

    # ---- classifier
    torch.manual_seed(seeds["classifier_init"])
    clf = Classifier(**config.classifier)
    torch.manual_seed(seeds["autoencoder_init"])
    ae = ResNetAE(**config.autoencoder)
    parent_meta = None
    if config.init_from:
        parent = parent_bundle(config, work, resume=resume, device=dev, progress=progress, log=log)
        _load_parent_weights(clf, parent.classifier, "classifier", config.init_from)
        _load_parent_weights(ae, parent.autoencoder, "autoencoder", config.init_from)
        parent_meta = {"config_file": config.init_from,
                       "training": {k: v for k, v in parent.meta.get("training", {}).items()
                                    if k not in ("init_from",)},
                       "init_from": parent.meta.get("training", {}).get("init_from")}
    stage_state = saved if saved and saved.get("stage") == "classifier" else None
    finished = dict(saved.get("finished", {})) if saved else {}

    def save_with(finished_now: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        return lambda st: ckpt.save({**st, "finished": finished_now})

    def eval_clf(model: nn.Module) -> dict[str, float]:
        probs = predict_tensor(model, val.images, dev)
        y = val.labels.numpy()
        aucs = per_pathology_auc(y, probs, pathologies)
        bce = float(F.binary_cross_entropy(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6),
                                           torch.from_numpy(y)))
        return {"val_loss": bce, "val_mean_auc": float(np.nanmean(list(aucs.values())))}

    clf_steps = (len(train) // min(config.classifier_training.batch_size, len(train))) * config.classifier_training.epochs
    if "classifier" in finished:
        clf.load_state_dict(finished["classifier"]["model"])
        clf_result = StageResult(finished["classifier"]["history"], finished["classifier"]["seconds"], clf_steps)
    else:
        reconstruct = None
        if config.reconstruction_fraction > 0:
            frozen_ae = copy.deepcopy(ae).to(dev).eval().requires_grad_(False)
            reconstruct = frozen_ae
        clf_result = fit(
            clf, robust_classifier_loss(config.label_smoothing, config.adversarial, reconstruct,
                                        config.reconstruction_fraction), train,
            config.classifier_training, stage="classifier",
            seed=config.seed, device=dev, augment_kwargs=config.augment, evaluate=eval_clf,
            resume_state=stage_state, save_state=save_with({}),
            checkpoint_every=config.checkpoint_every, stop_after_steps=stop_after_steps,
            progress=progress,
        )
        finished["classifier"] = {"model": clf.state_dict(), "history": clf_result.history,
                                  "seconds": clf_result.seconds}
        ckpt.save({"stage": "autoencoder-start", "finished": finished})

    # ---- calibration, then thresholds, on the validation split
    calibration = calibrate_classifier(clf, val, dev) if config.calibration == "platt" else None
    val_probs = predict_tensor(clf, val.images, dev)
    val_y = val.labels.numpy()
    if config.thresholds == "youden":
        thresholds = {p: youden_threshold(val_y[:, i], val_probs[:, i]) for i, p in enumerate(pathologies)}
    else:
        thresholds = {p: 0.5 for p in pathologies}
    val_auc = per_pathology_auc(val_y, val_probs, pathologies)

    # ---- autoencoder
    stage_state = saved if saved and saved.get("stage") == "autoencoder" else None
    ae_stop = None if stop_after_steps is None else max(0, stop_after_steps - clf_steps)

    def eval_ae(model: nn.Module) -> dict[str, float]:
        rec = reconstruct_tensor(model, val.images, dev)
        mae = float((rec - val.images.float()).abs().mean())
        return {"val_mae": mae}

    frozen = None
    if config.ae_classifier_weight > 0:
        frozen = Classifier(**config.classifier).to(dev)
        frozen.load_state_dict(clf.state_dict())
        frozen.eval().requires_grad_(False)
    if "autoencoder" in finished:
        ae.load_state_dict(finished["autoencoder"]["model"])
        ae_result = StageResult(finished["autoencoder"]["history"], finished["autoencoder"]["seconds"], 0)
    else:
        ae_result = fit(
            ae, autoencoder_loss(config.ae_l2_weight, frozen, config.ae_classifier_weight), train,
            config.autoencoder_training,
            stage="autoencoder", seed=config.seed, device=dev,
            # the autoencoder reconstructs sharp images: no blur augmentation for it
            augment_kwargs={**config.augment, "blur_prob": 0.0},
            use_augment=config.augment_autoencoder, evaluate=eval_ae, resume_state=stage_state,
            save_state=save_with(finished), checkpoint_every=config.checkpoint_every,
            stop_after_steps=ae_stop, progress=progress,
        )
        finished["autoencoder"] = {"model": ae.state_dict(), "history": ae_result.history,
                                   "seconds": ae_result.seconds}
        ckpt.save({"stage": "done", "finished": finished})

    # ---- validation summary of the autoencoder (Appendix-K style, quick)
    rec = reconstruct_tensor(ae, val.images, dev)
    rec_probs = predict_tensor(clf, rec, dev)
    val_mae = float((rec - val.images.float()).abs().mean())

    meta = {
        "training": {
            "config": config.to_dict(),
            "data_seeds": seeds,
            "n_train": len(train),
            "n_val": len(val),
            "device": str(dev),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "seconds": {
                "data": data_seconds,
                "classifier": clf_result.seconds,
                "autoencoder": ae_result.seconds,
                "total_this_session": time.perf_counter() - run_t0,
            },
            "parameters": {"classifier": count_parameters(clf), "autoencoder": count_parameters(ae)},
            "classifier_history": clf_result.history,
            "autoencoder_history": ae_result.history,
            "val_auc": val_auc,
            "val_autoencoder_mae": val_mae,
            "val_mean_pred_drop_on_reconstruction_positives": {
                p: float((val_probs[val_y[:, i] == 1, i] - rec_probs[val_y[:, i] == 1, i]).mean())
                if (val_y[:, i] == 1).any() else float("nan")
                for i, p in enumerate(pathologies)
            },
            "thresholds_method": config.thresholds,
            "calibration": calibration,
            "init_from": parent_meta,
            "resolution_note": config.resolution_note,
            "autoencoder_note": config.autoencoder_note,
            **dict(extra_meta or {}),
        }
    }
    domain = training_domain(config, val, seeds, synthetic=data is None, log=log)
    if domain is not None:
        meta["domain"] = domain
    bundle = Bundle(clf, ae, pathologies=pathologies, resolution=config.resolution,
                    thresholds=thresholds, meta=meta, device=dev)
    bundle.save(out_dir)
    log(f"saved bundle to {out_dir} (val mean AUC {np.nanmean(list(val_auc.values())):.3f}, "
        f"AE MAE {val_mae:.1f})")
    return bundle


def training_domain(config: TrainConfig, val: TrainingData, seeds: Mapping[str, int], *,
                    synthetic: bool = True, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The bundle's training domain (``meta["domain"]``, see cfviewer.models.domain): the
    reference distribution of the validation images (held out from training), each also once
    with the training augmentation. ``cfviewer bundle-domain`` recreates the same for a bundle
    trained before domains were recorded. None (logged) when the split is too small."""
    from cfviewer.models import domain as dm

    if len(val) < dm.MIN_REFERENCE:
        log(f"the validation split has {len(val)} images, too few (< {dm.MIN_REFERENCE}) for a training-domain "
            "reference: the bundle's domain is unknown (add one later with `cfviewer bundle-domain`)")
        return None
    images = val.images.float().numpy()
    if synthetic:
        return dm.phantom_domain(images, resolution=config.resolution, augment=config.augment, seed=config.seed,
                                 dataset_seed=int(seeds["val"]), phantoms=config.phantoms)
    return dm.build_domain(images, description="the training run's validation images", source="validation images",
                           resolution=config.resolution, augment=config.augment, seed=config.seed)


def measure_training_speed(config: TrainConfig, resolutions: list[int], device: str = "auto",
                           batch: int = 16) -> dict[int, dict[str, float]]:
    """ms per image of one training step of each model at each resolution (random input)."""
    dev = resolve_device(device)
    out: dict[int, dict[str, float]] = {}
    for r in resolutions:
        out[r] = {
            "classifier_ms_per_image": _measure_step_ms(
                lambda: Classifier(**config.classifier), classifier_loss, r, batch, dev),
            "autoencoder_ms_per_image": _measure_step_ms(
                lambda: ResNetAE(**config.autoencoder), autoencoder_loss(config.ae_l2_weight), r, batch, dev),
        }
    return out
