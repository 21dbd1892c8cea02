"""PCI: the partial-convolution inpainter that marginalises image regions for the attribution
network of issue 12 ("inpainting attribution", ``shared/papers/inpainting-attribution.txt``,
section 2.2 and section 3 "Marginalization"; the inpainter itself is Liu et al. 2018, "Image
inpainting for irregular holes using partial convolutions").

``PCInpainter(x, keep)`` takes images in the classifier's units (N x 1 x R x R in [-1024, 1024],
what :meth:`cfviewer.models.bundle.Bundle.model_input` gives) and a keep mask (N x 1 x R x R in
[0, 1]: 1 = keep the pixel, 0 = hole) and returns the composite ``keep * x + (1 - keep) * raw``,
raw being the network's healthy-tissue estimate (:meth:`PCInpainter.raw`). The composite is
differentiable in ``keep`` and ``x`` (the attribution network backpropagates through it).

Partial convolution (Liu et al., eq. 1-2)
-----------------------------------------
For a window with inputs X, mask M (1 = valid) and sum(1) = C_in k^2:
``x' = W^T (X * M) * sum(1) / sum(M) + b`` where sum(M) > 0, else 0; the updated mask is 1 where
sum(M) > 0, else 0. Zero padding counts as hole (sum(1) is the constant C_in k^2, so border
windows are renormalised). :class:`PartialConv2d` implements it as
``W^T (X * M) * sum(1) / max(sum(M), 1) + b * min(sum(M), 1)`` with the mask update
``min(sum(M), 1)``: for a binary mask this is exactly Liu's rule (sum(M) is an integer, >= 1
wherever a valid pixel is in the window) and it is continuous in M. Masks of concatenated
inputs (the skip connections) are kept per source: the window sum weighs each source's mask by
its channel count, which is the sum over the concatenated per-channel masks of Liu et al.

Soft keep masks: the network sees a binary hole mask, ``keep >= mask_threshold`` (default 0.5;
the paper feeds its marginalisation net the *thresholded* attribution, Fig. 2 and section 3,
thresholded at 0.55). The renormalisation undoes any attenuation: a hole of keep = 0.01 would
be rescaled by 1 / 0.01 in the first layer and the network would see the finding it should
replace. The gradient with respect to keep therefore flows through the composition
(d composite / d keep = x - raw), with respect to x through both terms (outside the binary
holes). ``mask_threshold=None`` feeds keep to the partial convolutions as it is (exact for
binary masks, the soft generalisation above otherwise).

Architecture (section 2.2, adapted as section 3 says for chest X-rays)
----------------------------------------------------------------------
A U-Net. Contraction: ``len(widths)`` partial-convolution blocks of stride 2, kernels 7, 5, 5,
3, 3, ..., each partial conv -> BN -> ReLU. Expansion, mirrored: nearest x2 upsampling of
features and mask, concatenation with the encoder's features and mask of that scale (the last
one with the input image and its mask, as Liu et al.), partial conv 3 x 3 -> BN ->
LeakyReLU(0.2); a final 3 x 3 partial conv to depth 1 (greyscale; the paper's 3 is RGB) with a
bias and neither BN nor activation (Liu et al.'s last layer). Partial convolutions followed by
BN have no bias (BN's shift replaces it).

Depth and widths: the paper's mammography net has 8 levels at 576 x 448 (a 2 x 2 bottleneck)
and "for chest X-rays [one magnitude smaller resolution] we removed the bottom-most blocks";
at the bundle's 128 px, 5 levels give a 4 x 4 bottleneck whose units see the whole image
(holes of up to half the image are filled from global context), while a 6th level would work
on 2 x 2 maps with 3 x 3 kernels that mostly see padding. Widths: the paper's 64, 128, 256,
512, 512 are 11.6 M parameters and cost ~1.7 s per batch of 5 at 128 px on one core of the
2-core development CPU; the default (16, 32, 64, 96, 96) keeps the doubling at the top, has
0.5 M parameters and costs ~0.2-0.36 s per batch (loss included), so ~4000 steps (12 epochs of
the paper's 1700 images) fit the 30-minute CPU budget (phantoms have far less texture variety
than photographs). ``--widths 64,128,256,512,512`` restores the paper's (a GPU run).

Loss (Liu et al., section 3.2; weights of the paper, section 2.2)
----------------------------------------------------------------
``L = L_valid + 6 L_hole + 0.05 L_perc + 120 L_style + 0.1 L_tv`` in [0, 1] image units
((x + 1024) / 2048), out = raw, comp = M gt + (1 - M) out, M the binary training mask:
L_valid / L_hole = mean L1 of M (out - gt) / (1 - M) (out - gt) over all pixels;
L_perc = sum_p mean |psi_p(out) - psi_p(gt)| + mean |psi_p(comp) - psi_p(gt)|;
L_style = sum_p mean over the C_p x C_p entries of |K_p (G(out) - G(gt))| + the same for comp,
with G = psi^T psi and K_p = 1 / (C_p H_p W_p) (Liu's 1 / C_p^2 ||.||_1);
L_tv = L1 of the horizontal and vertical differences of comp over pixel pairs both in the hole
region dilated by 1 px, divided by the number of pixels.

Feature extractor psi (Liu et al. use ImageNet VGG-16 pool1-3; none can be downloaded here):
the frozen encoder of the bundle's own autoencoder (``bundle.autoencoder``, a ResNetAE trained
on the phantom domain without labels), its 3 first feature maps (after the stem's ReLU and
after the first two residual blocks: 1/2, 1/4, 1/8 of the side). It knows what phantom
radiographs look like and nothing of the labels; the classifier's features would let the
inpainter learn what the classifier being explained calls healthy (and learn to fool it),
which is what the marginalisation must not do. A bundle without an autoencoder needs
``features="random"``: a fixed, seeded random 3-stage conv net (random-feature perceptual and
style losses still measure local texture statistics, Ulyanov et al. 2018 "Deep image prior";
He et al. 2016), recorded in inpainter.json; it is a weaker prior, hence not the default.

Training (section 3)
--------------------
Healthy phantoms only (every pathology label forced to 0; confounders such as tubes and
markers occur as in the domain), rendered as the bundle's training images (phantom options
and render scale of ``bundle.meta["training"]["config"]``, :class:`PhantomSource`), on a
dataset seed of the inpainter's own; held-out validation phantoms from another stream, checked
disjoint. Per image a random irregular hole mask (:func:`random_keep_mask`: free-form strokes
and compact blobs of finding size covering 5-50 %, "masks which mimic possible configurations
during the attribution network training"). Optionally (``finding_holes`` > 0, default 0) a share
of them is replaced by the region a finding occupies on the same patient (:func:`finding_hole`:
the phantom rendered with one finding forced present; dilated by 0-3 px), meant to teach the
places findings occupy (costophrenic angles, the lung bases, the pleural rim). Measured on the
demo bundle (docs/experiments.md) at 0.5 it did not help: small effusions are still filled with
the mid-grey between lung and diaphragm (positives below threshold 24 % vs 22 %), and random
healthy holes got worse (held-out hole MAE 142 vs 126), so the default stays 0. Batch size 5; Adam; two phases: phase 1 at lr 2e-4
with BN after every partial convolution, phase 2 at lr 1e-5 with the encoder's BN frozen
(eval statistics, no affine updates) and only the decoder's BN trained (the paper's TBC
learning rates; Liu et al.'s fine-tuning). Every step is deterministic given (seed, epoch,
step), so a resumed run ends with the weights of an uninterrupted one; checkpoints in the work
folder every ``checkpoint_every`` steps, at epoch ends, on Ctrl-C and when ``max_minutes`` is
spent (the inpainter is then saved as it is, marked ``"stopped": "max_minutes"``).

Files, beside the bundle: ``DIR/inpainter.pt`` (state dict) + ``DIR/inpainter.json`` (format,
version, config, training summary, validation = :func:`marginalisation_check`). The inpainter
does not depend on the classifier's weights (retraining the classifier keeps it valid), but it
is trained at the bundle's resolution: :func:`load_inpainter` refuses another.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfviewer.device import runtime_record
from cfviewer.errors import CfviewerError
from cfviewer.models.bundle import cached_companion, companion_command, companion_dir, read_companion_doc

FORMAT = "cfviewer-inpainter"
VERSION = 1
INPAINTER_PT = "inpainter.pt"
INPAINTER_JSON = "inpainter.json"
CHECKPOINT = "inpainter_checkpoint.pt"
PIXEL_MIN, PIXEL_MAX = -1024.0, 1024.0
INPUT_SCALE = 1024.0
INPAINT_TAG = 0x696E7061696E74  # "inpaint": the seed streams of its own phantoms and masks
FIX_COMMAND = "cfviewer train-explainer inpainter --bundle {dir}"
DEFAULT_WIDTHS = (16, 32, 64, 96, 96)
LOSS_WEIGHTS = {"valid": 1.0, "hole": 6.0, "perc": 0.05, "style": 120.0, "tv": 0.1}
"""Section 2.2: L_PCI = L_valid + 6 L_hole + 0.05 L_perc + 120 L_style + 0.1 L_tv."""


class InpainterError(CfviewerError):
    """An inpainter configuration, file or model is unusable."""


class InpainterMissingError(InpainterError):
    """The bundle has no trained inpainter."""


class InpainterResolutionError(InpainterError):
    """The stored inpainter was trained at another resolution than the bundle's."""


# ---------------------------------------------------------------------- partial convolution
class PartialConv2d(nn.Module):
    """Partial convolution of Liu et al. 2018 (module docstring), 'same' zero padding.

    ``mask_groups``: the channel counts of the concatenated sources of the input, each with
    its own single-channel mask (default: one source, all ``in_channels``). ``forward(x,
    mask)`` takes x (N x in_channels x H x W) and mask (N x len(mask_groups) x H x W, 1 =
    valid) and returns (output, updated mask N x 1 x H' x W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True, mask_groups: Sequence[int] | None = None):
        super().__init__()
        groups = tuple(int(g) for g in (mask_groups or (in_channels,)))
        if sum(groups) != int(in_channels) or min(groups) < 1:
            raise InpainterError(f"PartialConv2d: mask groups {groups} do not add up to {in_channels} channels")
        k = int(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size, self.stride = int(in_channels), int(out_channels), k, int(stride)
        self.padding = k // 2
        self.mask_groups = groups
        self.conv = nn.Conv2d(in_channels, out_channels, k, stride=stride, padding=self.padding, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        kernel = torch.tensor(groups, dtype=torch.float32).view(1, -1, 1, 1).expand(1, len(groups), k, k)
        self.register_buffer("mask_kernel", kernel.clone(), persistent=False)
        self.window = float(in_channels * k * k)  # sum(1)

    def masked_input(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if len(self.mask_groups) == 1:
            return x * mask
        parts, a = [], 0
        for g, c in enumerate(self.mask_groups):
            parts.append(x[:, a:a + c] * mask[:, g:g + 1])
            a += c
        return torch.cat(parts, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mask.shape[1] != len(self.mask_groups) or x.shape[1] != self.in_channels:
            raise InpainterError(f"PartialConv2d: got {x.shape[1]} channels / {mask.shape[1]} masks, expected "
                                 f"{self.in_channels} / {len(self.mask_groups)}")
        out = self.conv(self.masked_input(x, mask))
        msum = F.conv2d(mask, self.mask_kernel.to(mask.dtype), stride=self.stride, padding=self.padding)
        new_mask = msum.clamp(0.0, 1.0)
        out = out * (self.window / msum.clamp_min(1.0))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_mask
        return out, new_mask


class EncoderBlock(nn.Module):
    """Partial conv (stride 2) -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.pconv = PartialConv2d(c_in, c_out, kernel, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, m = self.pconv(x, m)
        return F.relu(self.bn(h)), m


class DecoderBlock(nn.Module):
    """Nearest x2 upsampling of (features, mask), concatenation with the skip's (features,
    mask), partial conv 3 x 3 -> BN -> LeakyReLU(0.2); the last block (``last``) is a partial
    conv with bias and no BN / activation."""

    def __init__(self, c_low: int, c_skip: int, c_out: int, last: bool = False):
        super().__init__()
        self.last = bool(last)
        self.pconv = PartialConv2d(c_low + c_skip, c_out, 3, stride=1, bias=self.last, mask_groups=(c_low, c_skip))
        self.bn = None if self.last else nn.BatchNorm2d(c_out)

    def forward(self, h: torch.Tensor, m: torch.Tensor, skip: torch.Tensor, m_skip: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
        m = F.interpolate(m, size=skip.shape[-2:], mode="nearest")
        h, m = self.pconv(torch.cat([h, skip], 1), torch.cat([m, m_skip], 1))
        if self.bn is not None:
            h = F.leaky_relu(self.bn(h), 0.2)
        return h, m


def default_kernels(levels: int) -> list[int]:
    """7, 5, 5, 3, 3, ... (section 2.2) for ``levels`` encoder blocks."""
    return ([7, 5, 5] + [3] * max(0, levels - 3))[:levels]


class PCInpainter(nn.Module):
    """The partial-convolution U-Net (module docstring).

    ``forward(x, keep)``: composite ``keep * x + (1 - keep) * raw`` (x in [-1024, 1024], keep in
    [0, 1], both N x 1 x R x R); ``raw(x, keep)``: the network's output before composition, in
    the same units (unclipped)."""

    def __init__(self, resolution: int, widths: Sequence[int] = DEFAULT_WIDTHS,
                 kernels: Sequence[int] | None = None, mask_threshold: float | None = 0.5):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise InpainterError(f"inpainter widths {widths}: give one or more positive channel counts")
        kernels = [int(k) for k in (kernels if kernels is not None else default_kernels(len(widths)))]
        if len(kernels) != len(widths) or min(kernels) < 1 or any(k % 2 == 0 for k in kernels):
            raise InpainterError(f"inpainter kernels {kernels}: one odd size per level ({len(widths)} levels)")
        resolution = int(resolution)
        if resolution < 2 ** len(widths) or resolution % (2 ** len(widths)):
            raise InpainterError(f"inpainter: {len(widths)} levels halve the side {len(widths)} times, so the "
                                 f"resolution must be a multiple of {2 ** len(widths)}; got {resolution} "
                                 "(use fewer --widths)")
        if mask_threshold is not None and not 0.0 < float(mask_threshold) <= 1.0:
            raise InpainterError(f"inpainter mask_threshold {mask_threshold}: use a value in (0, 1] or None")
        self.resolution = resolution
        self.widths = widths
        self.kernels = kernels
        self.mask_threshold = None if mask_threshold is None else float(mask_threshold)
        chans = [1] + widths
        self.encoder = nn.ModuleList(EncoderBlock(chans[i], chans[i + 1], kernels[i]) for i in range(len(widths)))
        dec = []
        for i in range(len(widths), 0, -1):  # from the bottleneck up; skip = encoder level i - 1
            last = i == 1
            dec.append(DecoderBlock(chans[i], chans[i - 1],
                                    1 if last else chans[i - 1], last=last))
        self.decoder = nn.ModuleList(dec)
        self.freeze_encoder_bn = False

    def config(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "widths": list(self.widths), "kernels": list(self.kernels),
                "mask_threshold": self.mask_threshold}

    # -- BN schedule (section 3: phase 2 has BN only in the expansion path)
    def set_phase(self, phase: int) -> None:
        """Phase 1: every BN trains. Phase 2: the encoder's BN layers are frozen (eval
        statistics, affine parameters without gradient); the decoder's train."""
        self.freeze_encoder_bn = int(phase) >= 2
        for block in self.encoder:
            block.bn.requires_grad_(not self.freeze_encoder_bn)
        self.train(self.training)

    def train(self, mode: bool = True) -> "PCInpainter":
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            for block in self.encoder:
                block.bn.eval()
        return self

    def network_mask(self, keep: torch.Tensor) -> torch.Tensor:
        """The mask the partial convolutions see: ``keep >= mask_threshold`` (binary), or keep
        itself with ``mask_threshold=None``."""
        if self.mask_threshold is None:
            return keep.clamp(0.0, 1.0)
        return (keep >= self.mask_threshold).to(keep.dtype)

    def _check(self, x: torch.Tensor, keep: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise InpainterError(f"inpainter: expected N x 1 x H x W images, got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            raise InpainterError(f"inpainter trained at {self.resolution} px got {tuple(x.shape[-2:])} images")
        if keep.shape != x.shape:
            raise InpainterError(f"inpainter: keep mask {tuple(keep.shape)} does not match images {tuple(x.shape)}")

    def raw01(self, x01: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Network output in [-1, 1] input units (x / 1024) from x / 1024 and a network mask."""
        feats, masks = [x01], [mask]
        h, m = x01, mask
        for block in self.encoder:
            h, m = block(h, m)
            feats.append(h)
            masks.append(m)
        for j, block in enumerate(self.decoder):
            level = len(self.encoder) - 1 - j
            h, m = block(h, m, feats[level], masks[level])
        return h

    def raw(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The network's estimate of the whole image (before composition), in [-1024, 1024]
        units (unclipped)."""
        self._check(x, keep)
        return INPUT_SCALE * self.raw01(x / INPUT_SCALE, self.network_mask(keep))

    def composite(self, x: torch.Tensor, keep: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        return keep * x + (1.0 - keep) * raw.clamp(PIXEL_MIN, PIXEL_MAX)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.composite(x, keep, self.raw(x, keep))


# ---------------------------------------------------------------------- files / bundle cache
def _fix(bundle: Any) -> str:
    cmd = companion_command(FIX_COMMAND, bundle)
    # without an autoencoder the perceptual / style features must be the random ones
    return cmd + " --features random" if getattr(bundle, "autoencoder", None) is None else cmd


def has_inpainter(bundle: Any) -> bool:
    """Whether ``bundle`` has an inpainter (attached, or the files in its folder)."""
    if getattr(bundle, "_inpainter", None) is not None:
        return True
    d = companion_dir(bundle)
    return d is not None and (d / INPAINTER_PT).is_file() and (d / INPAINTER_JSON).is_file()


def attach_inpainter(bundle: Any, module: PCInpainter, doc: Mapping[str, Any] | None = None) -> PCInpainter:
    """Cache ``module`` on the in-memory ``bundle`` (what :func:`load_inpainter` returns
    afterwards): on the bundle's device, eval mode, parameters frozen. It must have been
    built for the bundle's resolution."""
    if int(module.resolution) != int(bundle.resolution):
        raise InpainterResolutionError(
            f"an inpainter for {module.resolution} px does not fit a bundle of {bundle.resolution} px; "
            f"train one with `{_fix(bundle)}`")
    module = module.to(bundle.device).eval().requires_grad_(False)
    bundle._inpainter = module
    bundle._inpainter_doc = dict(doc or {"format": FORMAT, "version": VERSION, "model": {"config": module.config()}})
    return module


def detach_inpainter(bundle: Any) -> None:
    """Forget the inpainter cached on ``bundle`` (the next :func:`load_inpainter` reads the files)."""
    for name in ("_inpainter", "_inpainter_doc"):
        if hasattr(bundle, name):
            delattr(bundle, name)


def inpainter_doc(bundle: Any) -> dict[str, Any]:
    """inpainter.json's content for the inpainter :func:`load_inpainter` gives."""
    load_inpainter(bundle)
    return dict(getattr(bundle, "_inpainter_doc", {}) or {})


def load_inpainter(bundle: Any) -> PCInpainter:
    """The bundle's inpainter, read once from ``DIR/inpainter.pt`` + ``DIR/inpainter.json`` and
    cached on the bundle object (its device, eval mode, frozen).

    Raises :class:`InpainterMissingError` (naming the folder and the command that trains it)
    when there is none, :class:`InpainterResolutionError` when it was trained at another
    resolution, :class:`InpainterError` when the files are unusable."""
    mod = cached_companion(bundle, "_inpainter")
    if mod is not None:
        return mod
    pt, doc = read_companion_doc(
        bundle, INPAINTER_PT, INPAINTER_JSON, FORMAT, VERSION, fix=_fix(bundle),
        in_memory="this bundle has no inpainter (it was built in memory: train one with "
                  "cfviewer.models.inpainter.train_inpainter or attach_inpainter, or load a bundle folder that "
                  f"has {INPAINTER_PT}); for a saved bundle run `{FIX_COMMAND.format(dir='DIR')}`",
        missing=f"the bundle {{d}} has no trained inpainter ({INPAINTER_PT} + {INPAINTER_JSON} are missing); "
                f"train it with `{_fix(bundle)}`",
        missing_error=InpainterMissingError, error=InpainterError)
    cfg = dict((doc.get("model") or {}).get("config") or {})
    if int(cfg.get("resolution", -1)) != int(bundle.resolution):
        raise InpainterResolutionError(
            f"the inpainter in {pt} was trained at {cfg.get('resolution')} px but the bundle's input is "
            f"{bundle.resolution} px; retrain it with `{_fix(bundle)}`")
    try:
        mod = PCInpainter(**cfg)
        state = torch.load(pt, map_location="cpu", weights_only=True)
        mod.load_state_dict(state)
    except InpainterError as exc:
        raise InpainterError(f"{pt.with_name(INPAINTER_JSON)}: {exc}; retrain with `{_fix(bundle)}`") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InpainterError(f"{pt} does not fit {pt.with_name(INPAINTER_JSON)} ({type(exc).__name__}: {first}); "
                             f"retrain with `{_fix(bundle)}`") from None
    return attach_inpainter(bundle, mod, doc)


def save_inpainter(module: PCInpainter, directory: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``inpainter.pt`` (state dict) and ``inpainter.json`` (``doc``) into ``directory``
    (each through a temporary file)."""
    from cfviewer.files import save_torch_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_torch_atomic({k: v.detach().cpu() for k, v in module.state_dict().items()}, directory / INPAINTER_PT)
    _write_doc(directory, doc)
    return directory / INPAINTER_PT


def _write_doc(directory: Path, doc: Mapping[str, Any]) -> None:
    """``inpainter.json`` through a temporary file."""
    tmp = Path(directory) / (INPAINTER_JSON + ".tmp")
    tmp.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
    tmp.replace(Path(directory) / INPAINTER_JSON)


def random_inpainter(resolution: int, seed: int = 0, widths: Sequence[int] | None = None,
                     mask_threshold: float | None = 0.5) -> PCInpainter:
    """A small untrained inpainter (eval mode) for tests; ``widths`` default: 3 levels of 4, 8, 8
    channels (fewer when ``resolution`` is not a multiple of 8)."""
    if widths is None:
        levels = 3
        while levels > 1 and int(resolution) % (2 ** levels):
            levels -= 1
        widths = [4, 8, 8][:levels]
    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        mod = PCInpainter(int(resolution), widths=widths, mask_threshold=mask_threshold)
    finally:
        torch.random.set_rng_state(state)
    return mod.eval()


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------- irregular masks
def random_hole(size: int, rng: np.random.Generator, min_cover: float = 0.05, max_cover: float = 0.5,
                blob_share: float = 0.6) -> np.ndarray:
    """A bool ``size`` x ``size`` hole (True = hole) covering about ``min_cover``-``max_cover``
    of the image (the target drawn uniformly): compact irregular blobs of finding size (an
    ellipse of radii 4-15 % of the side whose radius is perturbed by 2-4 low harmonics; share
    ``blob_share`` of the shapes) and free-form strokes (2-6 joined segments of width 2-7 % of
    the side, Liu et al.'s kind), centred in the middle 80 % of the image (where the lungs and
    findings are), added until the target is reached; a shape that would pass ``max_cover`` is
    drawn again smaller."""
    s = int(size)
    target = float(rng.uniform(min_cover, max_cover))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    hole = np.zeros((s, s), bool)
    for _ in range(60):
        if hole.mean() >= target:
            break
        shrink = 1.0
        for _try in range(4):
            if rng.random() < blob_share:
                shape = _blob(s, rng, xx, yy, shrink)
            else:
                shape = _stroke(s, rng, xx, yy, shrink)
            if (hole | shape).mean() <= max_cover:
                hole |= shape
                break
            shrink *= 0.6
    if not hole.any():  # every shape overshot: one small blob
        hole |= _blob(s, rng, xx, yy, 0.3)
    return hole


def _blob(s: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, shrink: float) -> np.ndarray:
    cx, cy = rng.uniform(0.1, 0.9, 2) * s
    a, b = rng.uniform(0.04, 0.15, 2) * s * shrink
    a, b = max(a, 1.0), max(b, 1.0)
    rot = rng.uniform(0, math.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = -dx * math.sin(rot) + dy * math.cos(rot)
    theta = np.arctan2(v / b, u / a)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    edge = np.ones_like(theta)
    for h in range(2, 2 + int(rng.integers(2, 5))):
        edge += rng.uniform(0.0, 0.25 / (h - 1)) * np.cos(h * theta + rng.uniform(0, 2 * math.pi))
    return r <= edge


def _stroke(s: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, shrink: float) -> np.ndarray:
    out = np.zeros(xx.shape, bool)
    p = rng.uniform(0.1, 0.9, 2) * s
    angle = rng.uniform(0, 2 * math.pi)
    width = max(1.5, rng.uniform(0.02, 0.07) * s * shrink)
    for _ in range(int(rng.integers(2, 7))):
        angle += rng.uniform(-math.pi / 2, math.pi / 2)
        length = rng.uniform(0.08, 0.25) * s * shrink
        q = np.clip(p + length * np.array([math.cos(angle), math.sin(angle)]), 0.05 * s, 0.95 * s)
        d = q - p
        t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        dist2 = (xx - p[0] - t * d[0]) ** 2 + (yy - p[1] - t * d[1]) ** 2
        out |= dist2 <= (width / 2) ** 2
        p = q
    return out


def random_keep_mask(n: int, size: int, seed: int | np.random.Generator, min_cover: float = 0.05,
                     max_cover: float = 0.5) -> torch.Tensor:
    """n keep masks N x 1 x size x size (float32, 1 = keep, 0 = hole) of :func:`random_hole`,
    deterministic given the seed."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    holes = np.stack([random_hole(size, rng, min_cover, max_cover) for _ in range(int(n))]) if n else \
        np.zeros((0, size, size), bool)
    return torch.from_numpy(~holes).float()[:, None]


# ---------------------------------------------------------------------- features and loss
class AutoencoderFeatures(nn.Module):
    """psi: the first ``n_maps`` feature maps of a frozen ResNetAE-style encoder (an
    ``nn.Sequential`` ``encoder``; a map is taken after every activation / residual block at
    a new resolution, the 1 x 1 latent projection excluded). Input: [0, 1] image units."""

    def __init__(self, autoencoder: nn.Module, n_maps: int = 3):
        super().__init__()
        enc = getattr(autoencoder, "encoder", None)
        if not isinstance(enc, nn.Sequential):
            raise InpainterError(
                f"the bundle's autoencoder {type(autoencoder).__name__} has no nn.Sequential encoder to take "
                "perceptual features from; train with features='random' (--features random)")
        self.layers = copy.deepcopy(enc).eval().requires_grad_(False)
        self.scale = float(getattr(autoencoder, "INPUT_SCALE", INPUT_SCALE))
        self.n_maps = int(n_maps)
        self.taps = self._find_taps()

    def _find_taps(self) -> list[int]:
        taps, mods = [], list(self.layers)
        for i, m in enumerate(mods):
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                continue  # a tap after the nonlinearity / block that follows
            taps.append(i)
        # keep the last tap per resolution: find resolutions with a probe
        with torch.no_grad():
            first = next(self.layers.parameters(), None)
            h = torch.zeros(1, 1, 64, 64, device=first.device if first is not None else "cpu")
            sizes = []
            for m in mods:
                h = m(h)
                sizes.append(h.shape[-1])
        best: dict[int, int] = {}
        for i in taps:
            best[sizes[i]] = i
        chosen = sorted(best.values())[: self.n_maps]
        if len(chosen) < self.n_maps:
            raise InpainterError(f"the autoencoder's encoder has {len(chosen)} feature scales, {self.n_maps} are "
                                 "needed; train with features='random'")
        return chosen

    def train(self, mode: bool = True) -> "AutoencoderFeatures":
        super().train(False)  # always frozen
        return self

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h = (x01 * (PIXEL_MAX - PIXEL_MIN) + PIXEL_MIN) / self.scale
        out = []
        for i, m in enumerate(self.layers):
            h = m(h)
            if i in self.taps:
                out.append(h)
                if len(out) == self.n_maps:
                    break
        return out


class RandomFeatures(nn.Module):
    """psi without an autoencoder: a fixed seeded random net of 3 stages (3 x 3 conv stride 2 +
    ReLU; 16, 32, 64 channels, Kaiming init); input [0, 1] image units."""

    def __init__(self, seed: int = 0, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        chans = [1] + [int(w) for w in widths]
        self.convs = nn.ModuleList()
        for i in range(len(widths)):
            conv = nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (chans[i] * 9)))
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h, out = 2.0 * x01 - 1.0, []
        for conv in self.convs:
            h = F.relu(conv(h))
            out.append(h)
        return out


def feature_extractor(bundle: Any, kind: str = "autoencoder", seed: int = 0) -> nn.Module:
    """psi of the loss (module docstring): ``"autoencoder"`` (the bundle's, required) or
    ``"random"``."""
    if kind == "autoencoder":
        ae = getattr(bundle, "autoencoder", None)
        if ae is None:
            raise InpainterError(
                "the bundle has no autoencoder, whose encoder gives the inpainter's perceptual and style "
                "features; train with features='random' (--features random: a fixed random conv net, a weaker "
                "prior) or use a bundle with an autoencoder")
        return AutoencoderFeatures(ae).to(bundle.device)
    if kind == "random":
        return RandomFeatures(seed).to(bundle.device)
    raise InpainterError(f"inpainter features {kind!r}: use 'autoencoder' or 'random'")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Classifier units [-1024, 1024] -> [0, 1]."""
    return (x - PIXEL_MIN) / (PIXEL_MAX - PIXEL_MIN)


def gram(f: torch.Tensor) -> torch.Tensor:
    """K_p psi^T psi: N x C x C, divided by C H W."""
    n, c, h, w = f.shape
    v = f.reshape(n, c, h * w)
    return v @ v.transpose(1, 2) / (c * h * w)


def hole_border(hole: torch.Tensor) -> torch.Tensor:
    """The hole region dilated by 1 px (3 x 3), N x 1 x H x W float."""
    return F.max_pool2d(hole, 3, stride=1, padding=1)


def tv_loss(comp: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s L_tv per sample: L1 of the horizontal / vertical neighbour differences of
    ``comp`` over pairs with both pixels in ``region``, divided by the pixel count."""
    n_pix = comp[0].numel()
    dh = (comp[..., :, 1:] - comp[..., :, :-1]).abs() * region[..., :, 1:] * region[..., :, :-1]
    dv = (comp[..., 1:, :] - comp[..., :-1, :]).abs() * region[..., 1:, :] * region[..., :-1, :]
    return (dh.flatten(1).sum(1) + dv.flatten(1).sum(1)) / n_pix


def inpainting_loss(out01: torch.Tensor, gt01: torch.Tensor, keep: torch.Tensor, features: nn.Module,
                    weights: Mapping[str, float] = LOSS_WEIGHTS) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_PCI (module docstring) of a batch: (mean total, per-sample terms) in [0, 1] units;
    ``keep`` is the binary training mask (1 = valid)."""
    hole = 1.0 - keep
    comp = keep * gt01 + hole * out01
    dims = (1, 2, 3)
    l_valid = (keep * (out01 - gt01)).abs().mean(dims)
    l_hole = (hole * (out01 - gt01)).abs().mean(dims)
    with torch.no_grad():
        f_gt = features(gt01)
    f_out = features(out01)
    f_comp = features(comp)
    l_perc = out01.new_zeros(len(out01))
    l_style = out01.new_zeros(len(out01))
    for fo, fc, fg in zip(f_out, f_comp, f_gt):
        l_perc = l_perc + (fo - fg).abs().mean(dims) + (fc - fg).abs().mean(dims)
        gg = gram(fg)
        l_style = l_style + (gram(fo) - gg).abs().mean((1, 2)) + (gram(fc) - gg).abs().mean((1, 2))
    l_tv = tv_loss(comp, hole_border(hole))
    terms = {"L_valid": l_valid, "L_hole": l_hole, "L_perc": l_perc, "L_style": l_style, "L_tv": l_tv}
    total = sum(float(weights[k[2:].lower()]) * v for k, v in terms.items())
    return total.mean(), terms


# ---------------------------------------------------------------------- data
def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), INPAINT_TAG, int(stream)]).generate_state(1, dtype=np.uint32)[0])


def training_seed(seed: int) -> int:
    """Dataset seed of the healthy training phantoms (inpainter stream 0)."""
    return _stream_seed(seed, 0)


def validation_seed(seed: int) -> int:
    """Dataset seed of the healthy held-out phantoms (stream 1, disjoint from training)."""
    return _stream_seed(seed, 1)


def check_seed(seed: int) -> int:
    """Dataset seed of the phantoms of :func:`marginalisation_check` (stream 2)."""
    return _stream_seed(seed, 2)


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of one step (masks), or with step = -1 of an epoch's shuffle."""
    ss = np.random.SeedSequence([int(seed), INPAINT_TAG, 100 + int(epoch), int(step) + 1])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def phantom_source(bundle: Any):
    """How the bundle's training images were rendered (phantom options, render scale)."""
    from cfviewer.evaluation.cases import PhantomSource

    return PhantomSource.for_bundle(bundle)


def render_phantom(source: Any, seed: int, labels: Mapping[str, int] | None = None):
    """(image R x R float32, masks name -> bool R x R, drawn labels) of phantom ``seed``
    rendered as ``source`` (:class:`PhantomSource`) renders it; the labels are what was drawn
    (``meta["true_labels"]``, before any label noise)."""
    from cfviewer.models.bundle import resize_to_resolution
    from cfviewer.models.data import phantom_config
    from cfviewer.phantoms import generate

    size, k = int(source.size), int(source.render_scale)
    ph = generate(int(seed), size=size * k, config=phantom_config(size * k, dict(source.options)), labels=labels)
    truth = dict(ph.meta.get("true_labels") or ph.labels)
    if k == 1:
        return ph.image, ph.masks, truth
    image = resize_to_resolution(torch.from_numpy(ph.image)[None, None], size)[0, 0].numpy()
    masks = {name: m.reshape(size, k, size, k).any(axis=(1, 3)) for name, m in ph.masks.items()}
    return image, masks, truth


@dataclass
class HealthyData:
    """Healthy phantoms: images N x R x R (float16, [-1024, 1024]) and their seeds; with
    ``holes`` (N x R x R bool) the region a finding occupies on the same patient
    (:func:`finding_hole`), a training hole whose healthy content is known."""

    images: torch.Tensor
    seeds: np.ndarray
    holes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])


def finding_hole(source: Any, seed: int, pathologies: Sequence[str]) -> np.ndarray:
    """The mask of one finding (pathology drawn from ``pathologies`` by the seed) of phantom
    ``seed`` rendered with that finding forced present: on the healthy rendering of the same
    seed (same patient, same anatomy) it is a hole exactly where findings lie (a blunted
    costophrenic angle, a collapsed lobe and the band its raised dome moved through, a
    pneumothorax rim, an enlarged heart's outline), whose healthy content is the ground truth.
    Random blobs and strokes rarely cover such places (issue 12: the inpainter filled small
    effusions' angles with the bright diaphragm around them)."""
    pats = list(pathologies)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, INPAINT_TAG & 0xFFFFFFFF, 7])
    for _ in range(len(pats)):
        p = pats[int(rng.integers(len(pats)))]
        masks = render_phantom(source, int(seed), {q: int(q == p) for q in pats})[1]
        m = masks.get(p)
        if m is not None and m.any():
            return m.astype(bool)
    return np.zeros((source.size, source.size), bool)


def healthy_phantoms(bundle: Any, n: int, dataset_seed: int, *, cache_dir: str | Path | None = None,
                     progress: bool = False, desc: str = "healthy phantoms",
                     exclude: Sequence[int] | np.ndarray | None = None,
                     finding_holes: bool = False) -> HealthyData:
    """n phantoms of the bundle's training domain with every pathology forced absent (image
    seeds :func:`cfviewer.phantoms.generator.image_seeds` of ``dataset_seed``, minus any in
    ``exclude``), cached in ``cache_dir`` as .npz; ``finding_holes`` adds each one's
    :func:`finding_hole`."""
    from cfviewer import PATHOLOGIES
    from cfviewer.models.data import _cache_key
    from cfviewer.phantoms.generator import image_seeds

    src = phantom_source(bundle)
    n = int(n)
    seeds = image_seeds(n + 16, int(dataset_seed))
    if exclude is not None and len(exclude):
        seeds = seeds[~np.isin(seeds, np.asarray(exclude, dtype=np.uint64))]
    seeds = seeds[:n]
    if len(seeds) < n:
        raise InpainterError("healthy_phantoms: too many excluded seeds")
    path = None
    if cache_dir is not None:
        key = _cache_key(n, int(dataset_seed), int(src.size), {**src.options, "_inpainter": "healthy",
                                                              "_seeds": hashlib.sha256(seeds.tobytes()).hexdigest()[:16],
                                                              **({"_holes": 1} if finding_holes else {})},
                         int(src.render_scale))
        path = Path(cache_dir) / f"healthy_{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                holes = torch.from_numpy(z["holes"]) if finding_holes else None
                return HealthyData(torch.from_numpy(z["images"]), z["seeds"], holes)
    labels = {p: 0 for p in PATHOLOGIES}
    images = np.empty((n, src.size, src.size), np.float16)
    holes = np.zeros((n, src.size, src.size), bool) if finding_holes else None
    it: Any = enumerate(seeds)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc=desc, unit="img", leave=False)
    for i, s in it:
        images[i] = render_phantom(src, int(s), labels)[0].astype(np.float16)
        if holes is not None:
            holes[i] = finding_hole(src, int(s), PATHOLOGIES)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, images=images, seeds=seeds, **({"holes": holes} if holes is not None else {}))
        tmp.replace(path)
    return HealthyData(torch.from_numpy(images), seeds, torch.from_numpy(holes) if holes is not None else None)


def training_keep_mask(data: HealthyData, idx: torch.Tensor, rng: np.random.Generator,
                       config: "InpainterConfig") -> torch.Tensor:
    """The keep masks of one training batch: :func:`random_keep_mask` for each image, replaced
    with probability ``config.finding_holes`` by the image's finding hole dilated by 0-3 px
    (when it has a non-empty one)."""
    res = data.resolution
    keep = random_keep_mask(len(idx), res, rng, config.min_cover, config.max_cover)
    if config.finding_holes > 0 and data.holes is not None:
        use = rng.random(len(idx)) < config.finding_holes
        radii = rng.integers(0, 4, len(idx))
        for j, i in enumerate(idx.tolist()):
            hole = data.holes[i].numpy()
            if use[j] and hole.any():
                keep[j, 0] = torch.from_numpy(~_dilate(hole, int(radii[j]))).float()
    return keep


# ---------------------------------------------------------------------- training
@dataclass
class InpainterConfig:
    """Everything that determines the trained inpainter (recorded in inpainter.json)."""

    widths: list[int] = field(default_factory=lambda: list(DEFAULT_WIDTHS))
    kernels: list[int] | None = None          # None: 7, 5, 5, 3, 3, ... (section 2.2)
    mask_threshold: float | None = 0.5
    epochs_phase1: int = 10                   # 12 epochs x 340 steps: ~15-25 min on the 2-core CPU
    epochs_phase2: int = 2
    n_train: int = 1700                       # section 3: 1700 healthy training images (TBC)
    n_val: int = 135                          # section 3: 135 healthy validation images
    n_check: int = 200                        # phantoms of the marginalisation check (0: skip)
    batch_size: int = 5                       # section 3 (chest X-ray)
    lr_phase1: float = 2e-4                   # section 3 (TBC): 2e-4 / 1e-5
    lr_phase2: float = 1e-5
    min_cover: float = 0.05
    max_cover: float = 0.5
    finding_holes: float = 0.0                # share of training holes that are a finding's region (finding_hole)
    features: str = "autoencoder"             # psi: "autoencoder" (the bundle's) or "random"
    seed: int = 0
    checkpoint_every: int = 100
    max_minutes: float | None = None

    RESUMABLE_KEYS = ("epochs_phase2", "max_minutes", "checkpoint_every", "n_val", "n_check")
    """Keys a resumed run may change (everything else must match the checkpoint)."""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "InpainterConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InpainterError(f"inpainter config: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        cfg = cls(**dict(doc))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def epochs(self) -> int:
        return int(self.epochs_phase1) + int(self.epochs_phase2)

    def validate(self, resolution: int | None = None) -> None:
        if self.epochs_phase1 < 0 or self.epochs_phase2 < 0:
            raise InpainterError("inpainter config: epochs_phase1 and epochs_phase2 must be >= 0")
        if self.batch_size < 1 or self.n_train < 1 or self.n_val < 0 or self.n_check < 0:
            raise InpainterError("inpainter config: batch_size >= 1, n_train >= 1, n_val >= 0 and n_check >= 0 "
                                 "are required")
        if not (self.lr_phase1 > 0 and self.lr_phase2 > 0):
            raise InpainterError("inpainter config: the learning rates must be > 0")
        if not 0.0 <= self.min_cover <= self.max_cover < 1.0:
            raise InpainterError(f"inpainter config: need 0 <= min_cover <= max_cover < 1, got "
                                 f"{self.min_cover}, {self.max_cover}")
        if not 0.0 <= self.finding_holes <= 1.0:
            raise InpainterError(f"inpainter config: finding_holes {self.finding_holes} must be in [0, 1]")
        if self.features not in ("autoencoder", "random"):
            raise InpainterError(f"inpainter config: features {self.features!r}: use 'autoencoder' or 'random'")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InpainterError(f"inpainter config: max_minutes {self.max_minutes} must be > 0")
        if self.checkpoint_every < 0:
            raise InpainterError("inpainter config: checkpoint_every must be >= 0")
        res = int(resolution) if resolution is not None else 2 ** len(self.widths)
        PCInpainter(res, self.widths, self.kernels, self.mask_threshold)

    def fingerprint(self, resolution: int, domain: Any) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_KEYS}
        if not d.get("finding_holes"):  # added later: a run without it keeps its fingerprint
            d.pop("finding_holes", None)
        d["resolution"] = int(resolution)
        d["domain"] = domain
        return hashlib.sha256(json.dumps(_jsonable(d), sort_keys=True).encode()).hexdigest()[:16]


class InpainterStopped(Exception):
    """Raised when ``stop_after_steps`` is reached (a checkpoint has been written): tests."""


@dataclass
class InpainterResult:
    inpainter: PCInpainter
    doc: dict[str, Any]
    path: Path | None


def default_work_dir(bundle_dir: str | Path | None) -> Path:
    from cfviewer.paths import work_cache_dir

    return work_cache_dir("inpainter", bundle_dir)


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InpainterError(f"checkpoint {path} is unreadable ({exc}); delete it or run without --resume") from None
    if state.get("fingerprint") != fingerprint:
        raise InpainterError(
            f"checkpoint {path} belongs to another inpainter configuration or bundle domain; run without "
            "--resume to start over (or pass the options it was made with: only --epochs-phase2, "
            "--max-minutes, --n-val and --n-check may change)")
    return state


def _optimizer(model: PCInpainter, phase: int, config: InpainterConfig) -> torch.optim.Optimizer:
    lr = config.lr_phase1 if phase == 1 else config.lr_phase2
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def validation_masks(n: int, resolution: int, seed: int, config: InpainterConfig | None = None) -> torch.Tensor:
    """The fixed keep masks of the held-out hole error (stream 3 of the seed)."""
    cfg = config or InpainterConfig()
    return random_keep_mask(n, resolution, _stream_seed(seed, 3), cfg.min_cover, cfg.max_cover)


@torch.no_grad()
def hole_error(model: PCInpainter, data: HealthyData, keep: torch.Tensor, batch_size: int = 16) -> dict[str, float]:
    """Mean absolute error inside the holes (classifier units and [0, 1] units) and the
    composite's mean absolute error per image (0 outside the holes)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    err_sum, hole_sum, comp_sum = 0.0, 0.0, 0.0
    for i in range(0, len(data), batch_size):
        x = data.images[i:i + batch_size].to(device=dev, dtype=torch.float32)[:, None]
        k = keep[i:i + batch_size].to(dev)
        comp = model(x, k)
        e = (comp - x).abs()
        err_sum += float((e * (1 - k)).sum())
        hole_sum += float((1 - k).sum())
        comp_sum += float(e.mean((1, 2, 3)).sum())
    model.train(was)
    mae = err_sum / max(hole_sum, 1.0)
    return {"hole_mae": mae, "hole_mae01": mae / (PIXEL_MAX - PIXEL_MIN),
            "image_mae": comp_sum / max(len(data), 1), "n_images": len(data),
            "hole_share": hole_sum / max(keep.numel(), 1)}


def _domain(bundle: Any) -> dict[str, Any]:
    src = phantom_source(bundle)
    return {"resolution": int(src.size), "phantoms": dict(src.options), "render_scale": int(src.render_scale)}


def train_inpainter(
    bundle: Any,
    config: InpainterConfig | None = None,
    out_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    stop_after_steps: int | None = None,
    data: HealthyData | None = None,
    val_data: HealthyData | None = None,
    log: Callable[[str], None] = print,
    save: bool = True,
) -> InpainterResult:
    """Train the bundle's inpainter (module docstring) on healthy phantoms of its domain,
    validate it (held-out hole error, :func:`marginalisation_check` on ``config.n_check``
    phantoms), save it to ``out_dir`` (default: the bundle's folder) and attach it to
    ``bundle``. ``data`` / ``val_data`` replace the phantoms (tests); ``stop_after_steps``
    saves a checkpoint and raises :class:`InpainterStopped` at that global step."""
    config = config or InpainterConfig()
    res = int(bundle.resolution)
    config.validate(res)
    dev = torch.device(bundle.device)
    bdir = companion_dir(bundle)
    out = Path(out_dir) if out_dir is not None else bdir
    if save and out is None:
        raise InpainterError("train_inpainter: the bundle was built in memory; pass out_dir=... (or save=False)")
    work = Path(work_dir) if work_dir is not None else default_work_dir(out or bdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / CHECKPOINT
    domain = _domain(bundle)
    fp = config.fingerprint(res, domain if data is None else f"given:{len(data)}")
    saved = _load_checkpoint(ckpt_path, fp) if resume else None
    if resume and saved is None:
        log(f"no inpainter checkpoint in {work}: starting from the beginning")
    if not resume and ckpt_path.exists():
        ckpt_path.unlink()
    session_t0 = time.perf_counter()
    features = feature_extractor(bundle, config.features, seed=config.seed)

    # ---- data (healthy phantoms only; held-out seeds disjoint from the training seeds)
    t = time.perf_counter()
    if data is None:
        data = healthy_phantoms(bundle, config.n_train, training_seed(config.seed), cache_dir=work,
                                progress=progress, desc="inpainter training phantoms (healthy)",
                                finding_holes=config.finding_holes > 0)
        data_from = f"{config.n_train} healthy phantoms, dataset seed {training_seed(config.seed)}"
        if config.finding_holes > 0:
            data_from += f", {config.finding_holes:.0%} of the holes a finding's region on the same patient"
    else:
        data_from = f"{len(data)} images given to train_inpainter"
    if val_data is None and config.n_val:
        val_data = healthy_phantoms(bundle, config.n_val, validation_seed(config.seed), cache_dir=work,
                                    progress=progress, desc="inpainter validation phantoms (healthy)",
                                    exclude=data.seeds)
    data_seconds = time.perf_counter() - t
    if data.resolution != res:
        raise InpainterError(f"inpainter training data is {data.resolution} px but the bundle's input is {res} px")
    overlap = int(np.isin(val_data.seeds, data.seeds).sum()) if val_data is not None and \
        val_data.seeds is not None and data.seeds is not None else None
    val_keep = validation_masks(len(val_data), res, config.seed, config) if val_data is not None else None

    # ---- model
    torch.manual_seed(_stream_seed(config.seed, 4))  # initialisation
    model = PCInpainter(res, config.widths, config.kernels, config.mask_threshold).to(dev)
    n = len(data)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs
    epoch, step_in_epoch, history, seconds_before = 0, 0, [], 0.0
    phase = 1 if config.epochs_phase1 > 0 else 2
    model.set_phase(phase)
    opt = _optimizer(model, phase, config)
    running: dict[str, list[float]] = {}
    if saved is not None:
        model.load_state_dict(saved["model"])
        epoch, step_in_epoch = int(saved["epoch"]), int(saved["step_in_epoch"])
        phase = int(saved["phase"])
        model.set_phase(phase)
        opt = _optimizer(model, phase, config)
        opt.load_state_dict(saved["optimizer"])
        history = list(saved["history"])
        running = {k: list(v) for k, v in dict(saved.get("running") or {}).items()}
        seconds_before = float(saved["seconds"])
    loop_t0 = time.perf_counter()

    def state() -> dict[str, Any]:
        return {"fingerprint": fp, "model": model.state_dict(), "optimizer": opt.state_dict(), "phase": phase,
                "epoch": epoch, "step_in_epoch": step_in_epoch, "history": history, "running": running,
                "seconds": seconds_before + time.perf_counter() - loop_t0}

    def save_ckpt() -> None:
        from cfviewer.files import save_torch_atomic

        save_torch_atomic(state(), ckpt_path)

    stopped: str | None = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch * config.epochs, initial=epoch * steps_per_epoch + step_in_epoch,
                   desc="inpainter", unit="step", dynamic_ncols=True, miniters=1, mininterval=1.0)
    budget = None if config.max_minutes is None else 60.0 * float(config.max_minutes)
    try:
        while epoch < config.epochs and stopped is None:
            want = 1 if epoch < config.epochs_phase1 else 2
            if want != phase:  # phase 2: encoder BN frozen, the paper's second learning rate, fresh Adam
                phase = want
                model.set_phase(phase)
                opt = _optimizer(model, phase, config)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(step_seed(config.seed, epoch, -1)))
            model.train()
            while step_in_epoch < steps_per_epoch:
                gstep = epoch * steps_per_epoch + step_in_epoch
                if stop_after_steps is not None and gstep >= stop_after_steps:
                    save_ckpt()
                    raise InpainterStopped(f"inpainter: stopped after {gstep} steps")
                if budget is not None and time.perf_counter() - session_t0 >= budget:
                    stopped = "max_minutes"
                    break
                rng = np.random.default_rng(step_seed(config.seed, epoch, step_in_epoch))
                idx = perm[step_in_epoch * bs:(step_in_epoch + 1) * bs]
                x = data.images[idx].to(device=dev, dtype=torch.float32)[:, None]
                keep = training_keep_mask(data, idx, rng, config).to(dev)
                out01 = to_unit(model.raw(x, keep))
                loss, terms = inpainting_loss(out01, to_unit(x), keep, features)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running.setdefault("loss", []).append(float(loss.detach()))
                for k, v in terms.items():
                    running.setdefault(k, []).append(float(v.detach().mean()))
                step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(phase=phase, loss=f"{np.mean(running['loss'][-50:]):.4f}",
                                    hole=f"{np.mean(running['L_hole'][-50:]):.4f}")
                if config.checkpoint_every and (gstep + 1) % config.checkpoint_every == 0:
                    save_ckpt()
            if stopped is not None:
                break
            record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase, "lr": float(opt.param_groups[0]["lr"])}
            record.update({k: float(np.mean(v)) if v else float("nan") for k, v in running.items()})
            if val_data is not None and len(val_data):
                record["val"] = hole_error(model, val_data, val_keep)
            record["seconds"] = seconds_before + time.perf_counter() - loop_t0
            history.append(record)
            running = {}
            val = record.get("val") or {}
            line = (f"inpainter epoch {epoch + 1}/{config.epochs} (phase {phase}): loss={record.get('loss', float('nan')):.4f} "
                    f"L_hole={record.get('L_hole', float('nan')):.4f}"
                    + (f" held-out hole MAE={val['hole_mae']:.1f}" if val else "") + f" ({record['seconds']:.0f} s)")
            if bar is not None:
                bar.write(line)
            else:
                log(line)
            epoch += 1
            step_in_epoch = 0
            save_ckpt()
    except KeyboardInterrupt:
        save_ckpt()
        raise
    finally:
        if bar is not None:
            bar.close()
    save_ckpt()
    if stopped:
        log(f"inpainter: the {config.max_minutes:g}-minute budget is spent at epoch {epoch + 1}, step "
            f"{step_in_epoch}: saving the inpainter as it is (continue with --resume)")
    train_seconds = seconds_before + time.perf_counter() - loop_t0
    model.eval()
    attach_inpainter(bundle, model, {"format": FORMAT, "version": VERSION, "model": {"config": model.config()}})
    model = bundle._inpainter

    # ---- validation
    t = time.perf_counter()
    validation: dict[str, Any] = {}
    if val_data is not None and len(val_data):
        validation["healthy_holes"] = hole_error(model, val_data, val_keep)
        validation["healthy_holes"]["seed_overlap_with_training"] = overlap
    if config.n_check:
        validation["marginalisation"] = marginalisation_check(bundle, model, n=config.n_check, seed=config.seed,
                                                              healthy=val_data, progress=progress)
        validation["marginalisation_by_size"] = marginalisation_by_size(bundle, model, n=config.n_check,
                                                                        seed=config.seed, progress=progress)
    eval_seconds = time.perf_counter() - t
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "method": "partial-convolution inpainting (Liu et al. 2018) as the marginalisation of the inpainting "
                  "attribution paper (section 2.2)",
        "model": {"class": "cfviewer.models.inpainter:PCInpainter", "config": model.config(), "file": INPAINTER_PT,
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "bundle": {"directory": bdir.name if bdir is not None else None, "resolution": res, "domain": domain,
                   "note": "trained on healthy images only; independent of the classifier's weights"},
        "loss": {"weights": dict(LOSS_WEIGHTS), "features": config.features,
                 "feature_taps": list(getattr(features, "taps", []))},
        "training": {
            "config": config.to_dict(),
            "data": data_from,
            "validation_data": (f"{len(val_data)} healthy phantoms, dataset seed {validation_seed(config.seed)}"
                                if val_data is not None else None),
            "steps_per_epoch": steps_per_epoch,
            "steps": epoch * steps_per_epoch + step_in_epoch,
            "epochs_done": epoch,
            "phase": phase,
            "stopped": stopped,
            "history": history,
            "seconds": {"data": data_seconds, "training": train_seconds, "evaluation": eval_seconds,
                        "this_session": time.perf_counter() - session_t0},
            **runtime_record(dev),
        },
        "validation": validation,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    bundle._inpainter_doc = doc
    path = save_inpainter(model, out, doc) if save else None
    if path is not None:
        log(f"saved the inpainter to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return InpainterResult(inpainter=model, doc=doc, path=path)


# ---------------------------------------------------------------------- marginalisation check (Fig. 1c)
def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0).numpy()


@torch.no_grad()
def marginalisation_check(bundle: Any, inpainter: PCInpainter | None = None, n: int = 200, seed: int = 0, *,
                          runs: int = 1, dilate: int = 2, exclusion: int = 3, batch_size: int = 16,
                          healthy: HealthyData | None = None, progress: bool = False,
                          min_cover: float = 0.05, max_cover: float = 0.5,
                          healthy_only: bool = False) -> dict[str, Any]:
    """The paper's Fig. 1c check on ``n`` held-out phantoms of the bundle's domain (dataset
    seed :func:`check_seed`; image i has pathology ``i mod C`` forced present or absent with
    probability 1/2, the others drawn as in the domain, so every pathology has positives).

    Per pathology the classifier's AUC (drawn labels) on (i) the original images, (ii) the
    images with random irregular holes (:func:`random_hole`) placed outside every finding mask
    (dilated by ``exclusion`` px) inpainted, mean over ``runs`` mask draws (the paper: within
    ~0.01 of (i)), and (iii) with each positive's own finding mask (dilated by ``dilate`` px)
    inpainted (negatives as in (ii)): the AUC, the share of positives the classifier called
    positive whose prediction falls below the threshold, and the mean prediction drop. Plus
    the hole error on ``healthy`` (default: 64 healthy held-out phantoms) with random masks.
    ``healthy_only`` computes (i) and (ii) alone (the finding and hole-error keys are None):
    the same holes, as (iii) draws no random numbers."""
    from cfviewer.evaluation.cases import training_seed_overlap
    from cfviewer.models.evaluation import roc_auc
    from cfviewer.phantoms.generator import image_seeds

    model = inpainter or load_inpainter(bundle)
    dev = torch.device(bundle.device)
    was = model.training
    model.eval()
    src = phantom_source(bundle)
    names = list(bundle.pathologies)
    c = len(names)
    seeds = image_seeds(int(n), check_seed(seed))
    rng = np.random.default_rng(_stream_seed(seed, 5))
    images, labels, findings, own = [], [], [], []
    it: Any = enumerate(seeds)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(seeds), desc="marginalisation check phantoms", unit="img", leave=False)
    from cfviewer import PATHOLOGIES

    for i, s in it:
        p = names[i % c]
        forced = {p: int(rng.random() < 0.5)} if p in PATHOLOGIES else None
        im, masks, truth = render_phantom(src, int(s), forced)
        images.append(im)
        labels.append([int(truth.get(q, 0)) for q in names])
        union = np.zeros(im.shape, bool)
        for q in names:
            if q in masks:
                union |= masks[q]
        findings.append(_dilate(union, exclusion))
        own.append({q: _dilate(masks[q], dilate) for q in names if truth.get(q) and q in masks})
    x_all = torch.from_numpy(np.stack(images)).float()[:, None]
    y = np.asarray(labels, bool)
    thr = np.asarray(bundle.threshold_array(), np.float64)
    clf = bundle.classifier

    def predict(x: torch.Tensor) -> np.ndarray:
        return np.concatenate([clf(x[i:i + batch_size].to(dev)).float().cpu().numpy()
                               for i in range(0, len(x), batch_size)])

    def inpaint(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(x[i:i + batch_size].to(dev), keep[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(x), batch_size)])

    p0 = predict(x_all)
    p_healthy, covers = [], []
    for r in range(max(1, int(runs))):
        holes = np.stack([random_hole(src.size, rng, min_cover, max_cover) & ~f for f in findings])
        covers.append(float(holes.mean()))
        keep = torch.from_numpy(~holes).float()[:, None]
        p_healthy.append(predict(inpaint(x_all, keep)))
    ph = np.mean(p_healthy, 0)
    per: dict[str, Any] = {}
    for k, name in enumerate(names):
        rows = [i for i in range(len(seeds)) if name in own[i]]
        entry: dict[str, Any] = {"positives": int(y[:, k].sum()), "negatives": int((~y[:, k]).sum()),
                                 "threshold": float(thr[k]),
                                 "auc_original": roc_auc(y[:, k], p0[:, k]),
                                 "auc_healthy_inpainted": float(np.mean([roc_auc(y[:, k], q[:, k]) for q in p_healthy])),
                                 "auc_healthy_inpainted_runs": [roc_auc(y[:, k], q[:, k]) for q in p_healthy],
                                 "mean_abs_change_healthy_inpainted": float(np.abs(ph[:, k] - p0[:, k]).mean()),
                                 "positives_with_mask": len(rows)}
        entry["auc_delta_healthy"] = entry["auc_healthy_inpainted"] - entry["auc_original"]
        if rows and not healthy_only:
            keep = torch.from_numpy(np.stack([~own[i][name] for i in rows])).float()[:, None]
            pk = predict(inpaint(x_all[rows], keep))[:, k]
            before = p0[rows, k]
            called = before >= thr[k]
            entry["finding_share"] = float(np.mean([own[i][name].mean() for i in rows]))
            entry["mean_prediction_drop"] = float(np.mean(before - pk))
            entry["called_positive"] = int(called.sum())
            entry["share_below_threshold"] = float(np.mean(pk[called] < thr[k])) if called.any() else None
            scores = ph[:, k].copy()
            scores[rows] = pk
            entry["auc_pathology_inpainted"] = roc_auc(y[:, k], scores)
        else:
            entry.update(finding_share=None, mean_prediction_drop=None, called_positive=0,
                         share_below_threshold=None, auc_pathology_inpainted=None)
        per[name] = entry

    def mean_of(key: str) -> float | None:
        vals = [v[key] for v in per.values() if v.get(key) is not None and np.isfinite(v[key])]
        return float(np.mean(vals)) if vals else None

    if healthy is None and not healthy_only:
        healthy = healthy_phantoms(bundle, min(int(n), 64), validation_seed(seed), exclude=seeds)
    hkeep = None if healthy_only else random_keep_mask(len(healthy), src.size, _stream_seed(seed, 6), min_cover,
                                                       max_cover)
    result = {
        "n_images": int(len(seeds)),
        "seed": int(seed),
        "dataset_seed": check_seed(seed),
        "runs": int(max(1, runs)),
        "healthy_hole_share": float(np.mean(covers)),
        "dilate_px": int(dilate),
        "exclusion_px": int(exclusion),
        "classifier_training_seed_overlap": training_seed_overlap(bundle, [int(s) for s in seeds]),
        "mean_auc_original": mean_of("auc_original"),
        "mean_auc_healthy_inpainted": mean_of("auc_healthy_inpainted"),
        "max_abs_auc_delta_healthy": max((abs(v["auc_delta_healthy"]) for v in per.values()
                                          if np.isfinite(v["auc_delta_healthy"])), default=None),
        "mean_auc_pathology_inpainted": mean_of("auc_pathology_inpainted"),
        "mean_prediction_drop": mean_of("mean_prediction_drop"),
        "mean_share_below_threshold": mean_of("share_below_threshold"),
        "hole_error_healthy": None if healthy_only else hole_error(model, healthy, hkeep, batch_size),
        "per_pathology": per,
    }
    model.train(was)
    return _jsonable(result)


HOLE_SIZES = ((0.01, 0.05), (0.02, 0.2), (0.05, 0.5))
"""Random-hole coverages of :func:`marginalisation_by_size` (share of the image): the mask
network's masks (about 1.5 % of the image), the iterative search's range up to its size limit
delta = 0.2, and the training masks' 5-50 % (the check's default)."""


def marginalisation_by_size(bundle: Any, inpainter: PCInpainter | None = None, n: int = 200, seed: int = 0, *,
                            sizes: Sequence[Sequence[float]] = HOLE_SIZES, progress: bool = False
                            ) -> list[dict[str, Any]]:
    """The healthy half of :func:`marginalisation_check` at each (min_cover, max_cover) of
    ``sizes``: the paper's "within about 0.01" depends on how much of the film is inpainted,
    and it does not say how large its random regions were. Per size: the mean share of the
    image inpainted, the mean AUC before and after, and each pathology's change."""
    out = []
    for lo, hi in sizes:
        m = marginalisation_check(bundle, inpainter, n=n, seed=seed, min_cover=float(lo), max_cover=float(hi),
                                  progress=progress, healthy_only=True)
        deltas = {k: v["auc_delta_healthy"] for k, v in m["per_pathology"].items()}
        finite = [abs(d) for d in deltas.values() if d is not None and np.isfinite(d)]
        out.append({"min_cover": float(lo), "max_cover": float(hi), "n_images": m["n_images"],
                    "healthy_hole_share": m["healthy_hole_share"], "mean_auc_original": m["mean_auc_original"],
                    "mean_auc_healthy_inpainted": m["mean_auc_healthy_inpainted"],
                    "max_abs_auc_delta_healthy": max(finite, default=None), "auc_delta_healthy": deltas})
    return _jsonable(out)


def revalidate_inpainter(bundle: Any, n_check: int = 200, seed: int | None = None, progress: bool = False,
                         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Recompute the marginalisation check and :func:`marginalisation_by_size` of the bundle's
    trained inpainter against the bundle's classifier as it is now (the inpainter does not
    depend on the classifier, its check does: after a classifier retrain, or to add the size
    sweep to an older inpainter) and rewrite DIR/inpainter.json; the weights are untouched, so
    a mask network trained through this inpainter stays valid. The held-out hole error is kept
    from training. Returns the new validation."""
    from cfviewer.files import sha256_file

    bdir = companion_dir(bundle)
    if bdir is None:
        raise InpainterError("revalidate_inpainter: the bundle was built in memory; load it from its folder")
    model = load_inpainter(bundle)
    doc = dict(inpainter_doc(bundle))
    seed = int(((doc.get("training") or {}).get("config") or {}).get("seed", 0)) if seed is None else int(seed)
    t = time.perf_counter()
    validation = dict(doc.get("validation") or {})
    validation["marginalisation"] = marginalisation_check(bundle, model, n=n_check, seed=seed, progress=progress)
    validation["marginalisation_by_size"] = marginalisation_by_size(bundle, model, n=n_check, seed=seed,
                                                                    progress=progress)
    validation["revalidated"] = {"created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 "classifier_sha256": sha256_file(bdir / "classifier.pt"),
                                 "seconds": time.perf_counter() - t}
    doc["validation"] = validation
    _write_doc(bdir, doc)
    bundle._inpainter_doc = doc
    log(f"rewrote {bdir / INPAINTER_JSON} (weights unchanged)")
    return validation


def quality_line(validation: Mapping[str, Any] | None) -> str:
    """One line for the CLI."""
    if not validation:
        return "no held-out evaluation (n_val = n_check = 0)"
    parts = []
    hh = validation.get("healthy_holes")
    if hh:
        parts.append(f"held-out healthy holes ({hh['n_images']} images, {100 * hh['hole_share']:.0f} % holes): "
                     f"MAE {hh['hole_mae']:.1f} (of 2048)")
    m = validation.get("marginalisation")
    if m:
        def f(v: Any, fmt: str = "{:.3f}") -> str:
            return "n/a" if v is None else fmt.format(v)

        parts.append(f"marginalisation ({m['n_images']} images): mean AUC {f(m['mean_auc_original'])} -> "
                     f"{f(m['mean_auc_healthy_inpainted'])} with healthy regions inpainted (max |delta| "
                     f"{f(m['max_abs_auc_delta_healthy'])}), -> {f(m['mean_auc_pathology_inpainted'])} with the "
                     f"findings inpainted (positives below threshold {f(m['mean_share_below_threshold'], '{:.0%}')}, "
                     f"mean drop {f(m['mean_prediction_drop'])})")
    for r in validation.get("marginalisation_by_size") or []:
        parts.append(f"holes {100 * r['min_cover']:.0f}-{100 * r['max_cover']:.0f} % ({100 * r['healthy_hole_share']:.0f} "
                     f"% of the image): AUC {r['mean_auc_original']:.3f} -> {r['mean_auc_healthy_inpainted']:.3f}")
    return "; ".join(parts)


__all__ = [
    "HOLE_SIZES", "marginalisation_by_size", "revalidate_inpainter",
    "DEFAULT_WIDTHS", "FIX_COMMAND", "INPAINTER_JSON", "INPAINTER_PT", "LOSS_WEIGHTS", "AutoencoderFeatures",
    "DecoderBlock", "EncoderBlock", "HealthyData", "InpainterConfig", "InpainterError", "InpainterMissingError",
    "InpainterResolutionError", "InpainterResult", "InpainterStopped", "PCInpainter", "PartialConv2d",
    "RandomFeatures", "attach_inpainter", "check_seed", "default_kernels", "default_work_dir", "detach_inpainter",
    "feature_extractor", "gram", "has_inpainter", "healthy_phantoms", "hole_border", "hole_error",
    "inpainter_doc", "inpainting_loss", "load_inpainter", "marginalisation_check", "quality_line",
    "random_hole", "random_inpainter", "random_keep_mask", "render_phantom", "save_inpainter", "step_seed",
    "to_unit", "train_inpainter", "training_seed", "tv_loss", "validation_masks", "validation_seed",
]
