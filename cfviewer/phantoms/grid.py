"""A labelled 4 x 4 contact sheet of phantoms with mask outlines (the README figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from cfviewer import PATHOLOGIES
from cfviewer.phantoms.generator import PhantomConfig, check_size, generate

COLOURS: dict[str, tuple[int, int, int]] = {
    "Atelectasis": (255, 170, 0),
    "Cardiomegaly": (255, 60, 60),
    "Effusion": (0, 170, 255),
    "Lung Opacity": (60, 220, 60),
    "Mass": (255, 0, 255),
    "Pneumothorax": (255, 255, 0),
    "chest_tube": (0, 255, 220),
    "marker": (170, 170, 255),
}

SHORT = {"Atelectasis": "Atel", "Cardiomegaly": "Cardio", "Effusion": "Eff", "Lung Opacity": "Opac",
         "Mass": "Mass", "Pneumothorax": "PTX", "chest_tube": "tube", "marker": "marker"}

# Which findings each of the 16 tiles forces (the rest are off); confounders follow the config.
GRID_LABELS: tuple[tuple[str, ...], ...] = (
    (), ("Atelectasis",), ("Cardiomegaly",), ("Effusion",),
    ("Lung Opacity",), ("Mass",), ("Pneumothorax",), (),
    ("Pneumothorax", "Effusion"), ("Cardiomegaly", "Effusion"), ("Mass", "Lung Opacity"), ("Atelectasis",),
    ("Pneumothorax",), ("Cardiomegaly", "Mass"), ("Effusion",), ("Lung Opacity", "Atelectasis"),
)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    return binary_dilation(mask, iterations=width) & ~mask


def tile(ph, draw_masks: bool = True) -> np.ndarray:
    """RGB uint8 view of one phantom with its masks outlined."""
    grey = ((ph.image + 1024.0) / 2048.0 * 255.0).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if draw_masks:
        w = max(1, ph.image.shape[0] // 200)
        for name, m in ph.masks.items():
            rgb[outline(m, w)] = COLOURS.get(name, (255, 255, 255))
    return rgb


def make_grid(path: str | Path, seed: int = 0, size: int = 256, config: PhantomConfig | None = None) -> Path:
    """Write a 4 x 4 grid PNG of phantoms (normal ones and each finding, some combined) with
    finding masks outlined in colour and the labels printed under each tile."""
    from PIL import Image, ImageDraw, ImageFont

    size = check_size(size)
    ss = np.random.SeedSequence(int(seed)).generate_state(len(GRID_LABELS), dtype=np.uint64)
    pad, text_h = 4, max(14, size // 14)
    W = 4 * size + 5 * pad
    H = 4 * (size + text_h) + 5 * pad
    sheet = Image.new("RGB", (W, H), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=max(10, text_h - 4))
    except TypeError:  # old Pillow
        font = ImageFont.load_default()
    for k, forced in enumerate(GRID_LABELS):
        labels = {p: int(p in forced) for p in PATHOLOGIES}
        ph = generate(int(ss[k]), size, config, labels=labels)
        r, c = divmod(k, 4)
        x0 = pad + c * (size + pad)
        y0 = pad + r * (size + text_h + pad)
        sheet.paste(Image.fromarray(tile(ph)), (x0, y0))
        names = [p for p in PATHOLOGIES if ph.labels[p]] + [c_ for c_, v in ph.confounders.items() if v]
        x = x0 + 2
        if not names:
            draw.text((x, y0 + size + 1), "no finding", fill=(200, 200, 200), font=font)
        for name in names:
            label = SHORT[name] + (f" {ph.meta['ctr']:.2f}" if name == "Cardiomegaly" else "")
            draw.text((x, y0 + size + 1), label, fill=COLOURS[name], font=font)
            x += int(draw.textlength(label + "  ", font=font))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out
