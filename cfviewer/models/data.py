"""Training data for the demo models: phantom radiographs held in memory as float16, and the
light augmentation applied on the fly."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from cfviewer import PATHOLOGIES


@dataclass
class TrainingData:
    """Images N x R x R (float16, [-1024, 1024]), labels N x C (float32 0/1),
    confounders N x K (bool) and the per-image phantom seeds (for disjointness checks)."""

    images: torch.Tensor
    labels: torch.Tensor
    confounders: np.ndarray | None = None
    seeds: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])


def phantom_config(resolution: int, options: Mapping[str, Any] | None = None):
    """A cfviewer.phantoms.PhantomConfig for ``resolution`` with the given overrides."""
    from cfviewer.phantoms import PhantomConfig

    opts = dict(options or {})
    if "severity_range" in opts:
        opts["severity_range"] = tuple(opts["severity_range"])
    return PhantomConfig(size=resolution, **opts)


def _cache_key(n: int, seed: int, resolution: int, options: Mapping[str, Any] | None,
               render_scale: int = 1) -> str:
    from cfviewer.phantoms import generator

    src = Path(generator.__file__).parent
    code = hashlib.sha256()
    for f in sorted(src.glob("*.py")):  # a changed phantom generator invalidates the cache
        code.update(f.read_bytes())
    key = {"n": n, "seed": seed, "r": resolution, "opts": options or {}}
    if render_scale != 1:
        key["render_scale"] = render_scale
    doc = json.dumps(key, sort_keys=True)
    return hashlib.sha256(doc.encode() + code.digest()).hexdigest()[:16]


def phantom_data(
    n: int,
    seed: int,
    resolution: int,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "phantoms",
    render_scale: int = 1,
    n_jobs: int = 1,
) -> TrainingData:
    """Generate n phantoms (dataset seed ``seed``) once, as float16, optionally cached on disk
    as .npz keyed by (n, seed, resolution, options, render_scale, phantom generator source).

    ``render_scale`` k > 1 renders each phantom at k x ``resolution`` and resizes it to
    ``resolution`` with the resize of ``Bundle.model_input``: a film a reader opens is large
    and reaches the model through that resize, and a phantom rendered natively at 128 px has
    pixel texture (noise, edges) that a downsampled large film never has. ``n_jobs`` > 1
    renders in a process pool (the same images)."""
    from cfviewer.phantoms import iter_phantoms

    render_scale = check_render_scale(render_scale)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"phantoms_{_cache_key(n, seed, resolution, options, render_scale)}.npz"
        if path.is_file():
            with np.load(path) as z:
                return TrainingData(
                    images=torch.from_numpy(z["images"]),
                    labels=torch.from_numpy(z["labels"]),
                    confounders=z["confounders"],
                    seeds=z["seeds"],
                )
    cfg = phantom_config(resolution, options)
    images = np.empty((n, resolution, resolution), np.float16)
    labels = np.empty((n, len(PATHOLOGIES)), np.float32)
    confounders = np.zeros((n, 2), bool)
    seeds = np.empty(n, np.uint64)
    it = iter_phantoms(n, seed, resolution * render_scale, cfg, n_jobs=n_jobs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc=desc, unit="img", leave=False)
    from cfviewer.phantoms import CONFOUNDERS

    for i, ph in enumerate(it):
        im = ph.image
        if render_scale != 1:
            from cfviewer.models.bundle import resize_to_resolution

            im = resize_to_resolution(torch.from_numpy(im)[None, None], resolution)[0, 0].numpy()
        images[i] = im.astype(np.float16)
        labels[i] = ph.label_vector
        confounders[i] = [ph.confounders[c] for c in CONFOUNDERS]
        seeds[i] = ph.seed
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, images=images, labels=labels, confounders=confounders, seeds=seeds)
        tmp.replace(path)
    return TrainingData(torch.from_numpy(images), torch.from_numpy(labels), confounders, seeds)


MAX_RENDER_SCALE = 4


def check_render_scale(render_scale: Any) -> int:
    if isinstance(render_scale, bool) or not isinstance(render_scale, (int, np.integer)) \
            or not 1 <= int(render_scale) <= MAX_RENDER_SCALE:
        raise ValueError(f"render_scale {render_scale!r}: use an integer from 1 to {MAX_RENDER_SCALE} "
                         "(phantoms are rendered at render_scale x resolution, then resized)")
    return int(render_scale)


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    shift: float = 0.04,
    rotate_deg: float = 4.0,
    scale: float = 0.05,
    contrast: float = 0.1,
    brightness: float = 40.0,
    noise: float = 10.0,
    blur_prob: float = 0.0,
    blur_sigma: float = 1.5,
) -> torch.Tensor:
    """Light augmentation of N x 1 x R x R images in [-1024, 1024]: small random affine
    (shift as a fraction of the side, rotation, isotropic scale; no flips, laterality
    matters), contrast/brightness jitter, with probability ``blur_prob`` a Gaussian blur of
    sigma uniform in (0, ``blur_sigma``] pixels (radiographs vary in sharpness), and Gaussian
    noise. Deterministic given the generator."""
    n = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev)

    angle = u(-rotate_deg, rotate_deg) * math.pi / 180
    s = 1.0 + u(-scale, scale)
    tx, ty = u(-shift, shift) * 2, u(-shift, shift) * 2
    theta = affine_matrices(angle, s, tx, ty)
    # Outside the film is background: pad with the minimum (air), not a border smear.
    out = warp(x + 1024.0, theta, padding_mode="zeros") - 1024.0
    c = (1.0 + u(-contrast, contrast)).view(n, 1, 1, 1)
    b = u(-brightness, brightness).view(n, 1, 1, 1)
    out = out * c + b
    if blur_prob > 0:
        sig = u(0.0, blur_sigma).clamp_min(1e-3) * (u(0.0, 1.0) < blur_prob).to(x.dtype)
        out = gaussian_blur(out, sig)
    if noise > 0:
        out = out + torch.randn(out.shape, generator=generator).to(dev) * noise
    return out.clamp(-1024.0, 1024.0)


def affine_matrices(angle: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor,
                    flip: torch.Tensor | None = None) -> torch.Tensor:
    """N x 2 x 3 matrices in the ``affine_grid`` convention (output coordinates -> input
    coordinates, both normalised to [-1, 1]) from (N,) tensors: rotation by ``angle``
    (radians), magnification ``scale`` (> 1 enlarges: the output shows the central 1/scale
    of the input), shift (``shift_x``, ``shift_y``) in normalised units, and a horizontal
    mirror where ``flip`` is true. The one random affine of both augmentations, each drawing
    its own values: :func:`augment` (training) and :mod:`cfviewer.explain.augment`
    (augmentation averaging of explanations)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    if flip is None:
        cos_x, sin_x = cos, sin
    else:
        mirror = 1.0 - 2.0 * flip.to(cos.dtype)
        cos_x, sin_x = cos * mirror, sin * mirror
    return torch.stack([torch.stack([cos_x, -sin, shift_x], 1), torch.stack([sin_x, cos, shift_y], 1)], 1)


def warp(images: torch.Tensor, thetas: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Apply affines (:func:`affine_matrices`) to N x 1 x H x W images (bilinear,
    ``align_corners=False``); outside the input is ``padding_mode`` (grid_sample's)."""
    thetas = thetas.to(images.device, images.dtype)
    grid = F.affine_grid(thetas, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur of N x 1 x H x W with sigma (N,) in pixels
    (sigma 0 = unchanged); reflect padding."""
    n = x.shape[0]
    radius = max(1, int(math.ceil(3 * float(sigma.max())))) if n else 1
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(n, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s.clamp_min(1e-3)) ** 2)
    k = torch.where(s > 1e-3, k, (t.view(1, -1) == 0).to(x.dtype))
    k = k / k.sum(1, keepdim=True)
    y = F.pad(x.transpose(0, 1), (radius, radius, radius, radius), mode="reflect")  # 1 x N x H' x W'
    y = F.conv2d(y, k.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, k.view(n, 1, -1, 1), groups=n)
    return y.transpose(0, 1)
