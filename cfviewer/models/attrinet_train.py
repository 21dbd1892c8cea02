"""Training an Attri-Net bundle (Sun et al., MIDL 2023, sections 2.1-2.3 and Appendix B.1; the
model is :mod:`cfviewer.models.attrinet`).

The objective (eq. 5), summed over the classes c of a step:

    lambda_cls L_cls + lambda_adv L_adv + L_reg + lambda_ctr L_ctr

* L_adv (eq. 1): -D_c(x + M_c(x)) on the class's positives (the WGAN generator loss);
* L_reg (eq. 2, as the reference weighs it): ``l1_pos`` (100) x mean |M_c(x)| on positives +
  ``l1_neg`` (200) x mean |M_c(x)| on negatives (alpha_1 = 1, alpha_0 = 2 times lambda_reg = 100);
* L_cls: binary cross-entropy of the pooled logistic regression of class c on M_c(x) (eq. 3);
* L_ctr (eq. 4): the centre loss, squared distance of each map to its label's centre, summed over
  pixels and averaged over the batch (the reference's), centres updated by their own SGD (lr 0.1)
  with their gradient divided by lambda_ctr (Wen et al. 2016, as the reference).

The critic (Appendix B.1): min_theta sum_c E_neg[-D_c(x)] + E_pos[D_c(x + M_c(x))] + the WGAN-GP
gradient penalty (Gulrajani et al. 2017, weight 10) on random interpolates between the real
negatives and the fakes; ``critic_steps`` updates per generator step and ``critic_warmup``
updates for each of the first ``warmup_steps`` generator steps (the reference: 5, and 100 for
the first 25 steps and every 100th). The logistic regressions get ``cls_steps`` updates per
generator step on fresh batches with the generator frozen (the reference: 5).

"We repeatedly iterate through the different classes c and, for each, sample two
mini-batches, one containing positive examples of the current class and the other negative
examples" (section 2.3). Here every step holds all classes at once: for each class c,
``per_class`` positives and ``per_class`` negatives of c, each image with c's task code (the
AdaIN switch is per image, so one batch can hold several tasks); a step is the reference's
C consecutive steps done as one batched pass, which a CPU runs faster. Adam with betas (0, 0.9)
for generator and critic (the reference; weight decay 1e-5), Adam for the regressions.

What is shrunk for this CPU, and why (45 minutes on 2 cores instead of 72 hours on a V100):
the networks (:mod:`cfviewer.models.attrinet`), the number of generator steps (``steps``,
default 1000 against the reference's 500,000), the critic steps (1 against 5) and the
regression steps (2 against 5); so the learning rates are raised so that a thousand steps can
move the weights (generator and critic 5e-4 against 1e-4; regressions 3e-2 against 1e-4: the
pooled maps are small, |M| about 0.03, so the regression weights must grow large, and Adam
moves a weight by about lr per step). A first run with 2e-4 / 1e-2 and 2 critic steps reached
a validation mean AUC of only 0.62 after 200 steps (13 minutes), with the classification loss
barely below log 2. Batch: 2 + 2 per class (the paper's 4 per mini-batch).

After training: the generator step with the best validation mean AUC is kept (the reference
keeps the best checkpoint), each class's regression is Platt-calibrated on the validation
phantoms (a, b folded into the regression: the prediction stays linear in the pooled map), and
each class's threshold is the Youden point on the validation phantoms (section 2.3: "we select
the decision threshold which maximises the Youden-index ... on the validation set").
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cfviewer.device import runtime_record
from cfviewer.errors import CfviewerError
from cfviewer.models.attrinet import AttriCritic, AttriNet, to_unit
from cfviewer.models.evaluation import youden_threshold
from cfviewer.models.train import calibrate_classifier, per_pathology_auc, predict_tensor

ATTRINET_TAG = 0x61747472  # "attr": the seed streams of Attri-Net training
CHECKPOINT = "attrinet_checkpoint.pt"
GP_WEIGHT = 10.0


class AttriNetError(CfviewerError):
    """A bad Attri-Net training configuration or an unusable checkpoint."""


class AttriNetStopped(Exception):
    """Raised when ``stop_after_steps`` is reached (a checkpoint has been written): tests."""


@dataclass
class AttriNetConfig:
    """Everything that determines the trained model (recorded in bundle.json)."""

    width: int = 16
    n_res: int = 3
    n_fc: int = 8
    n_ones: int = 20
    pool: int | None = None
    critic_width: int = 16
    critic_layers: int = 4
    steps: int = 1000
    per_class: int = 2
    critic_steps: int = 1
    critic_warmup: int = 10
    warmup_steps: int = 10
    cls_steps: int = 2
    lr: float = 5e-4
    lr_critic: float = 5e-4
    lr_cls: float = 3e-2
    lambda_adv: float = 1.0
    lambda_cls: float = 100.0
    l1_pos: float = 100.0
    l1_neg: float = 200.0
    lambda_ctr: float = 0.01
    lr_centers: float = 0.1
    n_train: int = 4000
    n_val: int = 1000
    val_every: int = 100
    val_subset: int = 300
    seed: int = 0
    checkpoint_every: int = 25
    max_minutes: float | None = None
    init_from: str = ""  # an Attri-Net bundle whose generator and regressions start this run (warm start)

    RESUMABLE_KEYS = ("steps", "max_minutes", "checkpoint_every", "val_every")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        ints = ("width", "n_res", "n_ones", "critic_width", "critic_layers", "per_class", "n_train")
        bad = [k for k in ints if int(getattr(self, k)) < 1]
        if bad:
            raise AttriNetError(f"Attri-Net config: {', '.join(bad)} must be at least 1")
        for k in ("steps", "n_fc", "critic_steps", "critic_warmup", "warmup_steps", "cls_steps", "n_val",
                  "checkpoint_every"):
            if int(getattr(self, k)) < 0:
                raise AttriNetError(f"Attri-Net config: {k} must be >= 0")
        for k in ("lr", "lr_critic", "lr_cls", "lr_centers"):
            if not float(getattr(self, k)) > 0:
                raise AttriNetError(f"Attri-Net config: {k} must be > 0")
        for k in ("lambda_adv", "lambda_cls", "l1_pos", "l1_neg", "lambda_ctr"):
            if not float(getattr(self, k)) >= 0:
                raise AttriNetError(f"Attri-Net config: {k} must be >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise AttriNetError(f"Attri-Net config: max_minutes {self.max_minutes} must be > 0")
        if self.val_every < 1:
            raise AttriNetError("Attri-Net config: val_every must be at least 1")

    def fingerprint(self, data_key: str) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_KEYS}
        d["data"] = data_key
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class AttriNetResult:
    model: AttriNet
    doc: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def warm_start(model: AttriNet, source: str | Path, pathologies: list[str], resolution: int,
               log: Callable[[str], None] = print) -> None:
    """Start ``model`` from the generator and regressions of the Attri-Net bundle in ``source``
    (same pathologies, resolution and architecture), e.g. to continue training on new phantoms;
    its Platt calibration is reset (it is refitted after training) and the class centres are
    its centres. The critic starts fresh."""
    from cfviewer.models.bundle import Bundle

    try:
        b = Bundle.load(source, device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise AttriNetError(f"init_from {source}: not a loadable bundle ({exc}); give an Attri-Net bundle "
                            "folder (one written by cfviewer train-attrinet)") from None
    src = b.classifier
    if not isinstance(src, AttriNet):
        raise AttriNetError(f"init_from {source}: that bundle's model is not Attri-Net; give a bundle written by "
                            "cfviewer train-attrinet")
    if list(b.pathologies) != list(pathologies) or int(b.resolution) != int(resolution):
        raise AttriNetError(f"init_from {source}: pathologies {list(b.pathologies)} at {b.resolution} px do not "
                            f"match this run's {list(pathologies)} at {resolution} px")
    try:
        model.load_state_dict(src.state_dict())
    except RuntimeError as exc:
        raise AttriNetError(f"init_from {source}: its architecture differs from this config's (width, n_res, "
                            f"n_fc, n_ones, pool) ({' '.join(str(exc).split())[:300]})") from None
    with torch.no_grad():
        model.head.calib_scale.fill_(1.0)
        model.head.calib_bias.fill_(0.0)
    log(f"Attri-Net: warm start from {source}")


def warm_start_record(source: str | Path) -> dict[str, Any]:
    """What a warm-started bundle started from: the source bundle's identity and its own
    training record (steps, best step, phantom options, seconds, and its own warm start)."""
    from cfviewer.models.bundle import bundle_identity

    doc = json.loads((Path(source) / "bundle.json").read_text())
    tr = (doc.get("meta") or {}).get("training") or {}
    at = tr.get("attrinet") or {}
    rec = {"bundle": str(source), "identity": bundle_identity(source),
           "steps_done": at.get("steps_done"), "best_step": at.get("best_step"),
           "phantoms": (tr.get("config") or {}).get("phantoms"), "seconds": tr.get("seconds"),
           "val_auc": tr.get("val_auc")}
    if tr.get("warm_start"):
        rec["warm_start"] = tr["warm_start"]
    return rec


def step_seed(seed: int, step: int, part: int) -> int:
    ss = np.random.SeedSequence([int(seed), ATTRINET_TAG, int(step) + 1, int(part)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def critic_depth(layers: int, resolution: int) -> int:
    """The critic's stride-2 layers, at most ``layers`` and so many that its last feature map
    is at least about 8 x 8 (4 at 128 px; a small test resolution gets fewer)."""
    return max(1, min(int(layers), int(np.floor(np.log2(max(resolution, 16) / 8)))))


def class_pools(labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(positive indices, negative indices) of each class; raises when a class lacks either."""
    pools = []
    for c in range(labels.shape[1]):
        pos = torch.nonzero(labels[:, c] > 0.5).flatten()
        neg = torch.nonzero(labels[:, c] <= 0.5).flatten()
        pools.append((pos, neg))
    return pools


def paired_batch(data: Any, pools: list[tuple[torch.Tensor, torch.Tensor]], per_class: int,
                 g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x in [-1, 1], class index, label) for ``per_class`` positives then ``per_class``
    negatives of every class (section 2.3's paired mini-batches, all classes in one batch)."""
    rows, cls, lab = [], [], []
    for c, (pos, neg) in enumerate(pools):
        rows.append(pos[torch.randint(len(pos), (per_class,), generator=g)])
        rows.append(neg[torch.randint(len(neg), (per_class,), generator=g)])
        cls += [c] * (2 * per_class)
        lab += [1.0] * per_class + [0.0] * per_class
    idx = torch.cat(rows)
    x = to_unit(data.images[idx].to(device=device, dtype=torch.float32)[:, None])
    return x, torch.tensor(cls, device=device), torch.tensor(lab, device=device)


def gradient_penalty(critic: AttriCritic, codes: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     g: torch.Generator) -> torch.Tensor:
    a = torch.rand(len(real), 1, 1, 1, generator=g).to(real.device)
    mix = (a * real + (1 - a) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(mix, codes).sum(), mix, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def critic_loss(model: AttriNet, critic: AttriCritic, x: torch.Tensor, k: torch.Tensor, y: torch.Tensor,
                g: torch.Generator) -> tuple[torch.Tensor, float]:
    """Appendix B.1 for one paired batch: E_neg[-D(x)] + E_pos[D(x + M(x))] + 10 GP; and the
    Wasserstein estimate E_neg[D] - E_pos[D(fake)]."""
    pos, neg = y > 0.5, y <= 0.5
    with torch.no_grad():
        fake = (x[pos] + model.maps01(x[pos], k[pos])).clamp(-1, 1)
    codes_neg, codes_pos = model.task_codes[k[neg]], model.task_codes[k[pos]]
    d_real = critic(x[neg], codes_neg)
    d_fake = critic(fake, codes_pos)
    # positives and negatives are dealt in the same class order, so row i of each is class k
    gp = gradient_penalty(critic, codes_pos, x[neg], fake, g)
    return -d_real.mean() + d_fake.mean() + GP_WEIGHT * gp, float((d_real.mean() - d_fake.mean()).detach())


def generator_loss(model: AttriNet, critic: AttriCritic, centers: torch.Tensor, x: torch.Tensor,
                   k: torch.Tensor, y: torch.Tensor, cfg: AttriNetConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5 on one paired batch (module docstring); ``centers`` C x 2 x R^2 (requires grad)."""
    pos, neg = y > 0.5, y <= 0.5
    m = model.maps01(x, k)
    adv = -critic((x[pos] + m[pos]).clamp(-1, 1), model.task_codes[k[pos]]).mean()
    l1p = m[pos].abs().mean()
    l1n = m[neg].abs().mean()
    z = model.head(m, k, calibrated=False)
    cls = F.binary_cross_entropy_with_logits(z, y)
    flat = m.flatten(1)
    ctr = ((flat - centers[k, y.long()]) ** 2).sum(1).mean()
    loss = (cfg.lambda_adv * adv + cfg.l1_pos * l1p + cfg.l1_neg * l1n + cfg.lambda_cls * cls
            + cfg.lambda_ctr * ctr)
    with torch.no_grad():
        acc = ((z > 0).float() == y).float().mean()
    terms = {"adv": float(adv.detach()), "l1_pos": float(l1p.detach()), "l1_neg": float(l1n.detach()),
             "cls": float(cls.detach()), "center": float(ctr.detach()), "acc": float(acc)}
    return loss, terms


def _mean_auc(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> tuple[float, dict[str, float]]:
    per = per_pathology_auc(labels, probs, names)
    vals = [v for v in per.values() if np.isfinite(v)]
    return (float(np.mean(vals)) if vals else float("nan")), per


def _save(path: Path, state: dict[str, Any]) -> None:
    from cfviewer.files import save_torch_atomic

    save_torch_atomic(state, path)


def train_attrinet(
    train: Any,
    val: Any,
    pathologies: list[str],
    config: AttriNetConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    work_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    log: Callable[[str], None] = print,
    data_key: str = "",
) -> AttriNetResult:
    """Train Attri-Net on ``train`` (a :class:`~cfviewer.models.data.TrainingData`), select the
    best step by validation mean AUC on ``val`` (the first ``val_subset`` images), then
    calibrate and pick thresholds on all of ``val`` (module docstring). Checkpoints go to
    ``work_dir``; ``resume`` continues from the last one (only ``steps``, ``max_minutes``,
    ``checkpoint_every`` and ``val_every`` may change)."""
    from cfviewer.device import resolve_device

    config = config or AttriNetConfig()
    config.validate()
    dev = resolve_device(device)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / CHECKPOINT
    fp = config.fingerprint(data_key or f"{len(train)}:{train.resolution}")
    if train.labels.shape[1] != len(pathologies):
        raise AttriNetError(f"training labels have {train.labels.shape[1]} columns for {len(pathologies)} pathologies")
    pools = class_pools(train.labels)
    short = [p for p, (pos, neg) in zip(pathologies, pools) if len(pos) == 0 or len(neg) == 0]
    if short:
        raise AttriNetError(f"the training phantoms have no positives or no negatives for {', '.join(short)}; "
                            "train on more images (--n-train)")
    resolution = int(train.resolution)

    torch.manual_seed(step_seed(config.seed, -1, 0))
    model = AttriNet(pathologies, resolution, config.width, config.n_res, config.n_fc, config.n_ones,
                     config.pool).to(dev)
    critic_layers = critic_depth(config.critic_layers, resolution)
    critic = AttriCritic(model.code_dim, config.critic_width, critic_layers, config.n_fc).to(dev)
    centers = torch.zeros(len(pathologies), 2, resolution * resolution, device=dev, requires_grad=True)
    gen_params = list(model.generator.parameters())
    opt_g = torch.optim.Adam(gen_params, lr=config.lr, betas=(0.0, 0.9), weight_decay=1e-5)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr_critic, betas=(0.0, 0.9), weight_decay=1e-5)
    opt_c = torch.optim.Adam(model.head.parameters(), lr=config.lr_cls, weight_decay=1e-5)
    opt_ctr = torch.optim.SGD([centers], lr=config.lr_centers)

    step, history, seconds_before = 0, [], 0.0
    best: dict[str, Any] = {"auc": -1.0, "step": 0, "state": None}
    running: dict[str, list[float]] = {}
    saved = None
    if resume and ckpt.is_file():
        try:
            saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise AttriNetError(f"checkpoint {ckpt} is unreadable ({exc}); delete it or run without --resume") from None
        if saved.get("fingerprint") != fp:
            raise AttriNetError(f"checkpoint {ckpt} belongs to another Attri-Net configuration or data; run "
                                "without --resume to start over (only --steps and --max-minutes may change)")
    elif resume:
        log(f"no Attri-Net checkpoint in {work}: starting from the beginning")
    if not resume and ckpt.exists():
        ckpt.unlink()
    if saved is not None:
        model.load_state_dict(saved["model"])
        critic.load_state_dict(saved["critic"])
        with torch.no_grad():
            centers.copy_(saved["centers"].to(dev))
        for o, key in ((opt_g, "opt_g"), (opt_d, "opt_d"), (opt_c, "opt_c"), (opt_ctr, "opt_ctr")):
            o.load_state_dict(saved[key])
        step, history, seconds_before = int(saved["step"]), list(saved["history"]), float(saved["seconds"])
        best = {"auc": float(saved["best_auc"]), "step": int(saved["best_step"]), "state": saved.get("best_state")}
        log(f"resuming Attri-Net at step {step} of {config.steps}")
    elif config.init_from:
        warm_start(model, config.init_from, pathologies, resolution, log)
        with torch.no_grad():
            centers.copy_(model.centers.to(dev))

    val_x = val.images[: config.val_subset]
    val_y = val.labels[: config.val_subset].numpy()
    t0 = time.perf_counter()

    def state() -> dict[str, Any]:
        return {"fingerprint": fp, "model": model.state_dict(), "critic": critic.state_dict(),
                "centers": centers.detach().cpu(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "opt_c": opt_c.state_dict(), "opt_ctr": opt_ctr.state_dict(), "step": step,
                "history": history, "seconds": seconds_before + time.perf_counter() - t0,
                "best_auc": best["auc"], "best_step": best["step"], "best_state": best["state"]}

    def validate_now() -> None:
        auc, per = _mean_auc(val_y, predict_tensor(model, val_x, dev, batch_size=32), pathologies)
        rec = {"step": step, "val_mean_auc": auc, "val_auc": per,
               **{k: float(np.mean(v)) for k, v in running.items() if v},
               "seconds": seconds_before + time.perf_counter() - t0}
        history.append(rec)
        running.clear()
        if np.isfinite(auc) and auc > best["auc"]:
            best.update(auc=auc, step=step, state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            best["centers"] = centers.detach().cpu().clone()
        line = (f"Attri-Net step {step}/{config.steps}: val mean AUC {auc:.3f} (best {best['auc']:.3f} at step "
                f"{best['step']}); cls {rec.get('cls', float('nan')):.3f} W {rec.get('wasserstein', float('nan')):.3f} "
                f"|M| pos {rec.get('l1_pos', float('nan')):.4f} neg {rec.get('l1_neg', float('nan')):.4f} "
                f"({rec['seconds']:.0f} s)")
        log(line)
        model.train()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="Attri-Net", unit="step", dynamic_ncols=True,
                   mininterval=1.0)
    budget = None if config.max_minutes is None else 60.0 * float(config.max_minutes)
    stopped = None
    model.train()
    critic.train()
    try:
        while step < config.steps:
            if stop_after_steps is not None and step >= stop_after_steps:
                _save(ckpt, state())
                raise AttriNetStopped(f"Attri-Net: stopped after {step} steps")
            if budget is not None and time.perf_counter() - t0 >= budget:
                stopped = "max_minutes"
                break
            g = torch.Generator().manual_seed(step_seed(config.seed, step, 0))
            torch.manual_seed(step_seed(config.seed, step, 1))
            # 1. critic
            n_critic = config.critic_warmup if step < config.warmup_steps else config.critic_steps
            model.requires_grad_(False)
            critic.requires_grad_(True)
            for _ in range(n_critic):
                x, k, y = paired_batch(train, pools, config.per_class, g, dev)
                loss_d, w = critic_loss(model, critic, x, k, y, g)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                running.setdefault("wasserstein", []).append(w)
            # 2. generator (+ centres)
            critic.requires_grad_(False)
            model.generator.requires_grad_(True)
            x, k, y = paired_batch(train, pools, config.per_class, g, dev)
            loss_g, terms = generator_loss(model, critic, centers, x, k, y, config)
            opt_g.zero_grad(set_to_none=True)
            opt_ctr.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if config.lambda_ctr > 0 and centers.grad is not None:
                centers.grad.mul_(1.0 / config.lambda_ctr)
                opt_ctr.step()
            for key, v in terms.items():
                running.setdefault(key, []).append(v)
            # 3. logistic regressions, generator frozen
            model.generator.requires_grad_(False)
            model.head.requires_grad_(True)
            for _ in range(config.cls_steps):
                x, k, y = paired_batch(train, pools, config.per_class, g, dev)
                with torch.no_grad():
                    m = model.maps01(x, k)
                loss_c = config.lambda_cls * F.binary_cross_entropy_with_logits(model.head(m, k, calibrated=False), y)
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
            model.requires_grad_(True)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(cls=f"{np.mean(running['cls'][-20:]):.3f}",
                                acc=f"{np.mean(running['acc'][-20:]):.2f}")
            if step % config.val_every == 0 or step == config.steps:
                validate_now()
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                _save(ckpt, state())
    except KeyboardInterrupt:
        _save(ckpt, state())
        raise
    finally:
        if bar is not None:
            bar.close()
    if stopped:
        log(f"Attri-Net: the {config.max_minutes:g}-minute budget is spent at step {step}; finishing with the "
            "best step so far (continue with --resume)")
        if not history or history[-1]["step"] != step:
            validate_now()
    _save(ckpt, state())
    train_seconds = seconds_before + time.perf_counter() - t0

    # ---- keep the best step, calibrate, thresholds (section 2.3)
    final = copy.deepcopy(model).eval()
    if best["state"] is not None:
        final.load_state_dict(best["state"])
    if best.get("centers") is not None:
        final.centers.copy_(best["centers"].to(final.centers.device))
    else:
        final.centers.copy_(centers.detach())
    final.requires_grad_(False)
    calibration = calibrate_classifier(final, val, dev)  # Platt, folded into the regressions
    val_probs = predict_tensor(final, val.images, dev, batch_size=32)
    val_y = val.labels.numpy()
    thresholds = {p: float(youden_threshold(val_y[:, i], val_probs[:, i])) for i, p in enumerate(pathologies)}
    val_auc = _mean_auc(val_y, val_probs, pathologies)[1]
    doc = {
        "method": "Attri-Net, Sun et al. MIDL 2023",
        "config": config.to_dict(),
        "steps_done": step,
        "stopped": stopped,
        "best_step": best["step"],
        "best_val_mean_auc_subset": best["auc"],
        "history": history,
        "calibration": calibration,
        "val_auc": val_auc,
        "thresholds_method": "youden",
        "seconds": {"training": train_seconds},
        **runtime_record(dev),
        "critic_layers": critic_layers,
        "parameters": {"model": int(sum(p.numel() for p in final.parameters())),
                       "critic (training only)": int(sum(p.numel() for p in critic.parameters()))},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return AttriNetResult(model=final, doc={**doc, "thresholds": thresholds}, history=history)


# ---------------------------------------------------------------------- a bundle from a reference bundle
def reference_training(like: Any) -> dict[str, Any]:
    """The phantom settings and data seeds of the bundle Attri-Net learns the task of (its
    ``meta.training``): Attri-Net is trained on the same phantom distribution, the first
    ``n_train`` images of that bundle's training set and its validation set, so the two models
    compare on the same held-out phantoms."""
    tr = (getattr(like, "meta", {}) or {}).get("training") or {}
    cfg = tr.get("config") if isinstance(tr, dict) else None
    seeds = tr.get("data_seeds") if isinstance(tr, dict) else None
    if not isinstance(cfg, dict) or not isinstance(seeds, dict) or not isinstance(seeds.get("train"), int) \
            or not isinstance(seeds.get("val"), int):
        raise AttriNetError("the reference bundle records no phantom training set (meta.training.config and "
                            "data_seeds, as `cfviewer train` writes them); pass --like a bundle trained by "
                            "`cfviewer train` (e.g. study_data/demo/bundle)")
    return {"phantoms": dict(cfg.get("phantoms") or {}), "render_scale": int(cfg.get("render_scale", 1) or 1),
            "resolution": int(like.resolution), "train_seed": int(seeds["train"]), "val_seed": int(seeds["val"])}


def train_attrinet_bundle(like_dir: str | Path, out_dir: str | Path, config: AttriNetConfig | None = None, *,
                          work_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                          device: str = "auto", log: Callable[[str], None] = print,
                          stop_after_steps: int | None = None):
    """Train Attri-Net on the task of the bundle in ``like_dir`` and save it as a bundle in
    ``out_dir`` (bundle.json + classifier.pt; no autoencoder). Returns the saved Bundle."""
    from cfviewer.device import resolve_device
    from cfviewer.files import sha256_file
    from cfviewer.models.bundle import Bundle, bundle_identity
    from cfviewer.models.data import phantom_data

    config = config or AttriNetConfig()
    config.validate()
    like = Bundle.load(like_dir, device="cpu")
    ref = reference_training(like)
    out = Path(out_dir)
    if out.resolve() == Path(like_dir).resolve():
        raise AttriNetError(f"--out {out} is the reference bundle itself; give a new folder for the Attri-Net bundle")
    work = Path(work_dir) if work_dir is not None else out.parent / (out.name + ".work")
    dev = resolve_device(device)
    t = time.perf_counter()
    common = dict(resolution=ref["resolution"], options=ref["phantoms"], cache_dir=work, progress=progress,
                  render_scale=ref["render_scale"])
    train = phantom_data(config.n_train, ref["train_seed"], desc="Attri-Net training phantoms", **common)
    val = phantom_data(config.n_val, ref["val_seed"], desc="Attri-Net validation phantoms", **common)
    data_seconds = time.perf_counter() - t
    data_key = json.dumps({k: ref[k] for k in sorted(ref)} | {"n_train": config.n_train, "n_val": config.n_val},
                          sort_keys=True)
    log(f"Attri-Net for the task of {like_dir}: {len(like.pathologies)} pathologies, {ref['resolution']} px, "
        f"{len(train)} training + {len(val)} validation phantoms, device {dev}")
    result = train_attrinet(train, val, list(like.pathologies), config, device=dev, work_dir=work, resume=resume,
                            progress=progress, log=log, data_key=data_key, stop_after_steps=stop_after_steps)
    doc = result.doc
    thresholds = doc.pop("thresholds")
    like_dir = Path(like_dir)
    training = {
        "config": {"resolution": ref["resolution"], "phantoms": ref["phantoms"], "render_scale": ref["render_scale"],
                   "attrinet": config.to_dict()},
        "data_seeds": {"train": ref["train_seed"], "val": ref["val_seed"]},
        "n_train": config.n_train,
        "n_val": config.n_val,
        "val_auc": doc["val_auc"],
        "calibration": doc["calibration"],
        "thresholds_method": "youden",
        "seconds": {"data": data_seconds, **doc["seconds"]},
        "device": doc["device"],
        "torch": doc["torch"],
        "platform": doc["platform"],
        "attrinet": {k: v for k, v in doc.items() if k not in ("val_auc", "calibration", "seconds", "device",
                                                                "torch", "platform")},
    }
    if config.init_from:
        training["warm_start"] = warm_start_record(config.init_from)
    meta = {
        "source": "cfviewer train-attrinet",
        "model": "attrinet",
        "description": "Attri-Net (Sun et al. 2023): class maps M_c(x) + a logistic regression on each pooled map",
        "like": {"bundle": like_dir.name, "identity": bundle_identity(like_dir),
                 "classifier_sha256": sha256_file(like_dir / "classifier.pt")},
        "training": training,
    }
    if isinstance(like.meta.get("domain"), dict):
        # the same phantom distribution, resolution and input transform: the same training domain
        meta["domain"] = {**like.meta["domain"], "copied_from": meta["like"]["identity"]}
    bundle = Bundle(result.model, None, pathologies=like.pathologies, resolution=ref["resolution"],
                    thresholds=thresholds, meta=meta, device=dev, input_transform=like.input_transform)
    bundle.save(out)
    log(f"saved the Attri-Net bundle to {out} ({(out / 'classifier.pt').stat().st_size / 1e6:.2f} MB); "
        "validation AUC " + ", ".join(f"{p} {v:.3f}" for p, v in doc["val_auc"].items()))
    return Bundle.load(out, device=device)
