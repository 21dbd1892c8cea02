"""`cfviewer sample-size`: how many readers and cases a reader study needs (or the power of a
planned one), from pilot Obuchowski-Rockette variance components (cfviewer.analysis.sizing)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _readers(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"readers {text!r}: give a range such as 3-20 or a list such as 4,6,10")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample-size",
        help="readers x cases needed for a reader study (MRMC power, Hillis & Obuchowski)",
        description="Power and sample size of a two-arm MRMC reader study (random readers and cases by "
                    "default) from pilot variance components: the Obuchowski-Rockette components of a pilot "
                    "study (--study, its confidence rating as the score for TP vs FP), of a long CSV "
                    "(--pilot: reader,modality,case,truth,rating), or the published Van Dyke components. "
                    "Prints the cases needed per number of readers; --cases gives the power of one design.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--study", help="pilot study (name or folder): its answers give the components")
    src.add_argument("--pilot", type=Path, help="long CSV reader,modality,case,truth,rating of a pilot")
    p.add_argument("--db", default=None, help="database URL of --study (default: the study folder's)")
    p.add_argument("--question", default="confidence", help="the study question used as the score")
    p.add_argument("--include-simulated", action="store_true",
                   help="let --study's simulated answers supply the components (to try it out only)")
    p.add_argument("--effect", type=float, required=True,
                   help="the AUC difference between the arms the study must detect, e.g. 0.05")
    p.add_argument("--readers", type=_readers, default=list(range(3, 21)),
                   help="numbers of readers: a range 3-20 (default) or a list 4,6,10")
    p.add_argument("--cases", type=int, default=None, help="give the power of this many cases instead")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--analysis", default="RRRC", choices=("RRRC", "FRRC", "RRFC"),
                   help="RRRC: random readers and cases (default); FRRC: fixed readers; RRFC: fixed cases")
    p.add_argument("--out", type=Path, default=None, help="write sample_size.csv and power.html here")
    p.set_defaults(func=cmd_sample_size)


def pilot_components(args: argparse.Namespace):
    """(components, description) from --study, --pilot or the Van Dyke default."""
    import pandas as pd

    from cfviewer.analysis import mrmc, sizing

    if args.pilot is not None:
        if not args.pilot.is_file():
            raise sizing.SizingError(f"--pilot {args.pilot}: no such file; give a CSV with columns "
                                     "reader,modality,case,truth,rating")
        try:
            frame = pd.read_csv(args.pilot)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise sizing.SizingError(f"--pilot {args.pilot} is not a readable CSV ({exc})") from None
        res = mrmc.orh(frame)
        return res.components, f"pilot {args.pilot.name} ({len(res.readers)} readers, {res.n_cases} cases)"
    if args.study is not None:
        from cfviewer.cli.study import study_location
        from cfviewer.study import export
        from cfviewer.study.db import open_database

        name, root = study_location(args.study)
        db = open_database(args.db, study_dir=root)
        try:
            df = export.study_responses(db, name, include_simulated=args.include_simulated)
        finally:
            db.dispose()
        analyses = mrmc.analyze_study(df, args.question, by_pathology=False)
        first = analyses[0] if analyses else None
        if first is None or first.result is None:
            why = first.reason if first is not None else "no answers"
            raise sizing.SizingError(f"study {name!r} gives no MRMC components for {args.question!r}: {why}")
        res = first.result
        return res.components, f"study {name} ({len(res.readers)} readers, {res.n_cases} cases)"
    return sizing.VAN_DYKE, sizing.VAN_DYKE.source


def cmd_sample_size(args: argparse.Namespace) -> int:
    import pandas as pd

    from cfviewer.analysis import sizing

    comps, source = pilot_components(args)
    print(f"variance components: {source}")
    print(comps.table().to_string(index=False, float_format=lambda v: f"{v:.8f}", na_rep=""))
    if args.cases is not None:
        rows = [sizing.power(comps, j, args.cases, args.effect, args.alpha, args.analysis) for j in args.readers]
        table = pd.DataFrame([{"readers": r.readers, "cases": r.cases, "power": r.power, "ddf": r.ddf} for r in rows])
        print(f"\npower to detect an AUC difference of {args.effect:g} with {args.cases} cases ({args.analysis}, "
              f"alpha {args.alpha:g}):")
    else:
        table = sizing.sizing_table(comps, args.effect, args.readers, args.power, args.alpha, args.analysis)
        table["cases"] = table["cases"].astype("Int64")
        print(f"\ncases needed for {args.power:.0%} power to detect an AUC difference of {args.effect:g} "
              f"({args.analysis}, alpha {args.alpha:g}; '<NA>': not reachable with 2,000 cases):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        from cfviewer.csvsafe import write_csv

        write_csv(table, args.out / "sample_size.csv", index=False)
        top = int(max(50, (table["cases"].dropna().max() if "cases" in table and table["cases"].notna().any()
                           else 500) * 1.5))
        grid = sorted({int(k) for k in range(10, top + 1, max(1, top // 60))})
        curve = sizing.power_curve(comps, args.effect, [j for j in args.readers][:: max(1, len(args.readers) // 6)],
                                   grid, args.alpha, args.analysis)
        sizing.power_figure(curve, args.power).write_html(args.out / "power.html", include_plotlyjs="directory")
        print(f"wrote sample_size.csv and power.html to {args.out}")
    return 0
