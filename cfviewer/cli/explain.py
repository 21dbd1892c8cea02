"""`cfviewer explain`: one explanation of one radiograph (DICOM, PNG, JPEG or .npy).

Writes into --out: ``map.npy`` (R x R float32) and ``map.png`` (colour-mapped), ``overlay.png``,
``image.png`` (the model-space input), ``counterfactual.png`` and ``animation.gif`` when the
method produces frames (Latent Shift family), optionally ``animation.mp4``, and
``explanation.json`` (predictions, lambdas, parameters, timings, image evaluations). The JSON
holds no absolute path: files by their names in --out, the input by its file name and sha256,
the bundle by its folder name and identity (name@hash of its files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cfviewer.errors import CfviewerError
from cfviewer.explain.frames import START_FRAMES


class ExplainArgsError(CfviewerError):
    """A command-line argument of `cfviewer explain` is malformed."""


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. --param n_frames=12")
    return key.strip(), value.strip()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain one prediction on one image (map, overlay, GIF, JSON)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", required=True, type=Path, help="radiograph: DICOM, PNG, JPEG or .npy")
    p.add_argument("--target", required=True, help="pathology to explain, e.g. Cardiomegaly")
    p.add_argument("--method", default="latentshift-max",
                   help="explainer name (default latentshift-max; see --list)")
    p.add_argument("--bundle", type=Path, default=None,
                   help="model bundle directory (default: the demo bundle)")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="explainer parameter (repeatable), e.g. --param search_pred_diff=0.8")
    p.add_argument("--augment", type=int, default=None, metavar="N",
                   help="average the map over N random geometric transforms (Charachon eq. 11)")
    p.add_argument("--out", required=False, type=Path, help="output directory (created)")
    p.add_argument("--gif-size", type=int, default=512, help="GIF side in pixels (default 512)")
    p.add_argument("--fps", type=float, default=8.0, help="animation frames per second (default 8)")
    p.add_argument("--mp4", action="store_true", help="also write animation.mp4 (needs imageio-ffmpeg)")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap of the map (default inferno)")
    p.add_argument("--device", default="auto", help="torch device (default auto: CUDA when present)")
    p.add_argument("--list", action="store_true", help="list the explainer names and exit")
    p.set_defaults(func=run)


def _resolve_target(name: str, pathologies: list[str]) -> str:
    """Exact name, else a case/space/underscore-insensitive match (lung_opacity)."""
    if name in pathologies:
        return name
    norm = {p.lower().replace(" ", "_"): p for p in pathologies}
    return norm.get(name.strip().lower().replace(" ", "_").replace("-", "_"), name)


def run(args: argparse.Namespace) -> int:
    from cfviewer.explain import get_explainer, list_explainers

    if args.list:
        print("\n".join(list_explainers()))
        return 0
    if args.out is None:
        raise ExplainArgsError("--out DIR is required: the directory to write the explanation into")
    if args.augment is not None and args.augment < 0:
        raise ExplainArgsError(f"--augment {args.augment}: use 0 (off) or a positive number of transforms")
    if not args.image.exists():
        raise ExplainArgsError(f"--image {args.image}: no such file; give the path of a DICOM or PNG radiograph")

    from cfviewer import imaging, paths
    from cfviewer.explain import render
    from cfviewer.models import Bundle

    bundle_dir = args.bundle or paths.demo_bundle_dir()
    bundle = Bundle.load(bundle_dir, device=args.device)
    params: dict[str, Any] = dict(args.param)
    explainer = get_explainer(args.method, bundle, augment=args.augment, **params)
    target = _resolve_target(args.target, bundle.pathologies)
    bundle.target_index(target)  # UnknownPathologyError before any work

    loaded = imaging.load_with_meta(args.image)
    e = explainer.explain(loaded.pixels, target)  # Bundle.model_input: field of view + resize

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def keep(key: str, path: Path) -> None:
        files[key] = path.name

    import numpy as np

    np.save(out / "map.npy", e.map)
    keep("map_npy", out / "map.npy")
    keep("map_png", render.save_png(render.map_image(e.map, args.cmap), out / "map.png"))
    window = render.display_window(e.image)
    keep("overlay", render.save_png(render.overlay(e.image, e.map, args.cmap, window=window), out / "overlay.png"))
    keep("image", render.save_png(render.to_grey(e.image, window), out / "image.png"))
    if e.counterfactual is not None:
        keep("counterfactual", render.save_png(render.to_grey(e.counterfactual, window), out / "counterfactual.png"))
    if e.frames is not None:
        keep("gif", render.write_gif(e, out / "animation.gif", size=args.gif_size, fps=args.fps))
        if args.mp4:
            keep("mp4", render.write_mp4(e, out / "animation.mp4", size=args.gif_size, fps=args.fps))
    doc = e.summary()
    from cfviewer.files import sha256_file
    from cfviewer.models.bundle import bundle_identity

    # No absolute paths: the input by file name + sha256, the bundle by its identity, and the
    # written files by their names in the output folder (the folder can be moved or shared).
    doc.update(
        image_name=args.image.name,
        image_sha256=sha256_file(args.image),
        image_format=loaded.meta.get("format"),
        image_shape=list(loaded.pixels.shape),
        model_input=bundle.input_spec(),
        field_of_view=list(bundle.field_of_view(loaded.pixels.shape)),
        bundle=Path(bundle_dir).resolve().name,
        bundle_id=bundle_identity(bundle_dir),
        files=files,
    )
    notes = search_notes(e)
    doc["warnings"] = list((e.params or {}).get("warnings") or [])  # also in params["warnings"]
    doc["notes"] = notes
    (out / "explanation.json").write_text(json.dumps(doc, indent=2) + "\n")
    files["json"] = "explanation.json"

    cf = f", counterfactual p = {e.frame_preds[0]:.3f}" if e.frame_preds is not None else ""
    rec = (f", {START_FRAMES[e.start_kind]['short']} p = {e.pred_reconstruction:.3f}"  # SAGen: g_s(x)
           if e.pred_reconstruction is not None else "")
    print(
        f"{e.method} for {target}: original p = {e.pred_original:.3f}{rec}{cf}; "
        f"{doc['timings']['total'] * 1000:.0f} ms; wrote {', '.join(sorted(files.values()))} to {out}"
    )
    for w in doc["warnings"]:
        print(f"warning: {w}")
    for n in notes:
        print(f"note: {n}")
    return 0


def search_notes(e: Any) -> list[str]:
    """What the Latent Shift search found when it could not move away from lambda 0. Names
    only lambdas the search checked; never proposes an unchecked range (a forced
    ``fix_range`` is checked afterwards, by the warnings)."""
    search = (e.params or {}).get("search") or {}
    if e.frames is None or not search or search.get("lower_reason") == "fix_range":
        return []
    if search.get("lower") != 0.0:
        return []
    reason = search.get("lower_reason")
    p0 = e.pred_reconstruction
    p0_text = f"{p0:.3f}" if p0 is not None else "n/a"
    if search.get("lower_index") == 0:
        why = {
            "pred_below_min": (f"the reconstruction's prediction ({p0_text}) is already below "
                               f"search_min_pred = {e.params.get('search_min_pred')}"),
        }.get(reason, f"rule {reason} fired at lambda 0 (reconstruction p = {p0_text})")
        return [f"the search stopped at lambda 0: {why}, so no other lambda was checked and the "
                "frames do not change. There is nothing this search can lower; a forced fix_range "
                "would show frames no rule has checked (they are checked afterwards and warned about)"]
    farthest = search.get("checked", search.get("lower"))
    n = int(search.get("lower_index", 0)) + 1
    return [f"no checked lambda lowers the prediction: the search checked lambda 0 to {farthest:.4g} "
            f"({n} points, search_mode={search.get('mode', 'walk')}; stopped by {reason}) and none gave a "
            "lower prediction within the pixel limit, so the frames do not change"]
