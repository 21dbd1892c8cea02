"""`cfviewer study ...`: create a study, import cases, sample the cohort, add readers (and
schedule them), precompute explanations, show status, export answers, run the analysis.

Every sub-command takes the study as a name (a folder under study_data/) or a folder path, and
`--db URL` (else CFVIEWER_DB_URL, else <study>/study.json, else SQLite <study>/study.db).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cfviewer.errors import CfviewerError


def study_location(value: str) -> tuple[str, Path]:
    """(name, folder) from a study name (study_data/<name>) or a folder path."""
    from cfviewer.paths import study_data_dir

    p = Path(value)
    if os.sep in value or value.startswith(".") or p.is_dir():
        return p.resolve().name, p.resolve()
    return value, study_data_dir() / value


def _open(args: argparse.Namespace):
    from cfviewer.study.db import open_database

    name, root = study_location(args.study)
    return name, root, open_database(args.db, study_dir=root)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study name (folder under study_data/) or study folder path")
    p.add_argument("--db", metavar="URL", default=None,
                   help="database URL (default: $CFVIEWER_DB_URL, <study>/study.json, <study>/study.db)")


def _parse_arm(text: str) -> tuple[str, list[Any]]:
    if "=" not in text:
        raise CfviewerError(f"--arm {text!r}: write 'Display name=method1,method2' "
                            "(e.g. 'Method A=gradient,guided_backprop')")
    name, methods = text.split("=", 1)
    return name.strip(), [m.strip() for m in methods.split(",") if m.strip()]


def _bar(total: int, desc: str, quiet: bool = False):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", disable=quiet, file=sys.stderr, leave=False)


# ------------------------------------------------------------------------------ commands ---

def cmd_create(args: argparse.Namespace) -> int:
    from cfviewer.study import reference, setup, studies

    name, root = study_location(args.study)
    cfg: dict[str, Any] = {"sessions_per_arm": args.sessions_per_arm, "min_gap_hours": args.min_gap_hours}
    if args.bundle:
        # checked before anything is written; stored relative to the study folder when inside it
        studies.check_bundle_dir(args.bundle)
        cfg["bundle"] = studies.portable_path(args.bundle, root)
    if args.db:
        studies.write_study_json(root, args.db)
    from cfviewer.study.db import open_database

    db = open_database(args.db, study_dir=root)
    if args.pathologies:
        cfg["pathologies"] = [p.strip() for p in args.pathologies.split(",") if p.strip()]
    questions = reference.DEFAULT_QUESTIONS
    if args.questions:
        try:
            questions = json.loads(Path(args.questions).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CfviewerError(f"--questions {args.questions}: cannot read a JSON list of questions ({exc})")
    arms = [_parse_arm(a) for a in args.arm] if args.arm else None  # None: the reference study's
    if args.arms_json:
        try:
            arms = [(a["name"], a["methods"]) for a in json.loads(Path(args.arms_json).read_text())]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CfviewerError(f"--arms-json {args.arms_json}: expected [{{\"name\": ..., \"methods\": [...]}}] ({exc})")
    # every input (arms, explainers, pathologies, questions, settings) is checked by the engine
    new = setup.new_study(db, name, root, seed=args.seed, config=cfg, arms=arms, questions=questions)
    print(f"created study {name!r} in {root} (database {db.engine.url.render_as_string(hide_password=True)})")
    for arm_name, methods in new.arms:
        print(f"  arm {arm_name!r}: {', '.join(methods)}")
    print(f"next: cfviewer study import {args.study} FOLDER --labels labels.csv")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from cfviewer.errors import ImportValidationError
    from cfviewer.study import cohort, setup

    name, root, db = _open(args)
    try:
        # shell paths: the working directory, else the image folder; two different files refused
        found, problems = {}, []
        for opt, value in (("--labels", args.labels), ("--boxes", args.boxes)):
            if value is not None:
                try:
                    found[opt] = cohort.resolve_cli_csv(value, args.folder, opt)
                except ImportValidationError as exc:
                    problems += exc.problems
        bbox_map = {}
        for item in args.bbox_map or ():
            finding, sep, target = item.partition("=")
            if not sep or not finding.strip() or not target.strip():
                problems.append(f"--bbox-map {item!r}: write FINDING=PATHOLOGY, e.g. --bbox-map Nodule=Mass")
            else:
                bbox_map[finding.strip()] = target.strip()
        if problems:
            raise ImportValidationError(problems)
        absent = [a.strip() for v in args.absent_pathology or () for a in v.split(",") if a.strip()]
        bar = _bar(0, "checking files", args.quiet)

        def prog(i: int, n: int) -> None:
            bar.total = n
            bar.update(i - bar.n)

        pats = [p.strip() for p in args.pathologies.split(",")] if args.pathologies else None
        rep = setup.import_cases(db, name, args.folder, found["--labels"], boxes_csv=found.get("--boxes"),
                                 pathologies=pats, absent_pathologies=absent, encoding=args.encoding,
                                 bbox_map=bbox_map, bbox_skip_unmapped=args.bbox_skip_unmapped,
                                 bbox_scale=args.bbox_scale, copy=args.copy, progress=prog)
        bar.close()
    except ImportValidationError as exc:
        print(f"cfviewer study import: nothing was imported; {len(exc.problems)} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    print(rep)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from cfviewer.models import Bundle
    from cfviewer.models.bundle import bundle_identity
    from cfviewer.study import setup, status, studies

    name, root, db = _open(args)
    bdir = args.bundle or status.study_overview(db, name).config.get("bundle")
    if not bdir:
        raise CfviewerError("no model bundle: pass --bundle DIR (or set it with `cfviewer study create --bundle`)")
    # --bundle is a path as typed (relative to the working directory); a stored one is
    # relative to the study folder (studies.portable_path)
    bpath = Path(bdir) if (args.bundle or Path(bdir).is_absolute()) else root / bdir
    bundle = Bundle.load(bpath, device=args.device)
    bar = _bar(0, "predicting", args.quiet)

    def prog(i: int, n: int) -> None:
        bar.total = n
        bar.update(i - bar.n)

    pats = [p.strip() for p in args.pathologies.split(",")] if args.pathologies else None
    rep = setup.sample_cohort(db, name, bundle, bundle_id=bundle_identity(bpath),
                              bundle_setting=studies.portable_path(bpath, root) if args.bundle else None,
                              per_pathology=args.per_pathology, fp_fraction=args.fp_fraction,
                              pathologies=pats, seed=args.seed, fill=args.fill, replace=args.replace,
                              progress=prog)
    bar.close()
    print(rep)
    return 0


def cmd_readers(args: argparse.Namespace) -> int:
    from cfviewer.study import setup, status

    name, root, db = _open(args)
    if args.add:
        res = setup.add_readers(db, name, args.add, base_url=args.base_url, reschedule=args.reschedule)
        summary, links = res.schedule, res.links
    else:
        summary, links = setup.schedule_readers(db, name, rebuild=args.reschedule), []
    if summary is not None and summary.assignments_added:
        print(f"scheduled {summary.readers_scheduled} reader(s): {summary.reads_per_reader} reads each "
              f"in {summary.sessions_per_reader} sessions")
    if links:
        print("reader links (shown once; only a hash of each token is stored):")
        for rname, link in links:
            print(f"  {rname}: {link}")
        if summary is None:
            print("no cohort yet: readers are scheduled when you run `cfviewer study readers` after sampling")
    for r in status.reader_statuses(db, name):
        prog = r.progress
        sessions = ", ".join(f"s{x.session} {x.done}/{x.total}" for x in prog.sessions)
        flag = " (simulated)" if r.simulated else ""
        print(f"  {r.name}{flag}: {prog.done}/{prog.total} reads done  [{sessions}]")
    return 0


def cmd_precompute(args: argparse.Namespace) -> int:
    from cfviewer.study import artifacts

    name, root, db = _open(args)
    bar = _bar(0, "precompute (case x arm)", args.quiet)

    def prog(i: int, n: int, label: str) -> None:
        bar.total = n
        bar.set_postfix_str(label[:40])
        bar.update(i - bar.n)

    bundle = None
    bundle_id = None
    if args.bundle:
        from cfviewer.models import Bundle
        from cfviewer.models.bundle import bundle_identity

        bundle = Bundle.load(args.bundle, device=args.device)
        bundle_id = bundle_identity(args.bundle)
    rep = artifacts.precompute(db, name, bundle=bundle, bundle_id=bundle_id, device=args.device,
                               progress=prog, force=args.force, limit=args.limit)
    bar.close()
    print(rep)
    if rep.units:
        rate = rep.units / max(rep.seconds, 1e-9) * 60
        print(f"throughput: {rate:.1f} case x arm per minute; manifest: {rep.manifest}")
    return 1 if rep.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from cfviewer.study import artifacts, status

    name, root, db = _open(args)
    ov = status.study_overview(db, name)
    print(f"study {ov.name!r} in {ov.root}")
    print(f"  database: {db.engine.url.render_as_string(hide_password=True)}")
    print(f"  bundle: {ov.config.get('bundle')}")
    print(f"  cases imported: {ov.n_cases}; cohort: {ov.n_cohort}")
    for p in sorted(ov.strata):
        print(f"    {p:<16} TP {ov.strata[p].get('TP', 0):>3}  FP {ov.strata[p].get('FP', 0):>3}")
    for a in ov.arms:
        print(f"  arm {a['name']!r}: {' + '.join(a['methods'])}")
    print(f"  questions: {', '.join(q['key'] for q in ov.questions)}")
    print(f"  washout: {ov.config.get('sessions_per_arm', 1)} session(s) per arm, "
          f"min gap {ov.config.get('min_gap_hours', 0)} h")
    for r in status.reader_statuses(db, name):
        flag = " (simulated)" if r.simulated else ""
        print(f"  reader {r.name}{flag}: {r.progress.done}/{r.progress.total} reads, "
              f"session {r.progress.current_session}")
    print(f"  answers stored: {ov.n_answers}")
    ast = artifacts.artifact_status(db, name, verify=not args.no_verify)
    print(f"  precomputed: {ast.complete_units}/{ast.expected_units} case x arm, {ast.files} files"
          + ("" if args.no_verify else f", {len(ast.problems)} problem(s)"))
    for p in ast.problems[:20]:
        print(f"    {p}")
    return 1 if ast.problems else 0


def _add_simulated_flags(p: argparse.ArgumentParser, verb: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--include-simulated", action="store_true",
                   help=f"also {verb} simulated readers' answers (default: left out); the output is marked "
                        "as including them")
    g.add_argument("--no-simulated", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts


def cmd_export(args: argparse.Namespace) -> int:
    from cfviewer.study import export

    name, root, db = _open(args)
    out = Path(args.out) if args.out else root / "export"
    res = export.export_named_study(db, name, out, include_simulated=args.include_simulated)
    print(f"exported {res.n_rows} answers to {res.out_dir}")
    if res.simulated_included:
        k = len(res.simulated_readers)
        print(f"  SIMULATED: includes {res.simulated_answers} simulated answer(s) from {k} simulated reader(s) "
              "(column 'simulated'; 'simulated_included' in study.json and manifest.json): never report them")
    elif res.simulated_excluded:
        k = len(res.simulated_excluded_readers)
        print(f"  {res.simulated_excluded} simulated answer(s) from {k} simulated reader(s) left out "
              "(pass --include-simulated to export them, flagged)")
    if res.n_rows == 0 and not res.simulated_excluded:
        print(f"  no answers yet in study {name!r}: readers' answers appear here once they submit")
    for f, h in res.files.items():
        print(f"  {h}  {f}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from cfviewer.analysis import analyze
    from cfviewer.csvsafe import write_csv
    from cfviewer.study import export

    name, root, db = _open(args)
    df = export.study_responses(db, name, include_simulated=True)  # analyze leaves them out unless told
    primary = _primary_analysis(db, name, args)
    rep = analyze(df, args.arm_a, args.arm_b, zero_method=args.zero_method, n_boot=args.n_boot,
                  seed=args.seed, figures=not args.no_figures, include_simulated=args.include_simulated,
                  study=name, include_hint="pass --include-simulated",
                  primary_strata=primary["strata"], primary_questions=primary["questions"],
                  mrmc_question=None if args.no_mrmc else args.mrmc_question)
    out = Path(args.out) if args.out else root / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(rep.info(), indent=2) + "\n")
    for stem, table in rep.tables().items():
        write_csv(table, out / f"{stem}.csv", index=False)
    for stem, fig in rep.figures.items():
        fig.write_html(out / f"{stem}.html", include_plotlyjs="directory")
    import pandas as pd

    cols = [c for c in ("question", "stratum_kind", "stratum", "n_pairs", "n_zero", "mean_diff", "sd_diff",
                        "p", "p_holm", "r_rb", "ci_low", "ci_high") if c in rep.comparison.columns]
    view = rep.comparison
    if "stratum_kind" in view.columns:
        view = view[view["stratum_kind"].isin(["all", "stratum"])]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"{rep.title} (zero method {args.zero_method})")
        if rep.includes_simulated:
            print(f"SIMULATED: {rep.simulated_note} (marked in analysis.json, every CSV's "
                  "'simulated_included' column and every figure)")
        print(view[cols].to_string(index=False) if cols else view.to_string(index=False))
        prim = ", ".join(primary["strata"]) + (f" x {', '.join(primary['questions'])}" if primary["questions"] else "")
        print(f"primary (confirmatory) analysis: {prim}; Holm adjusts within it. Other rows are exploratory "
              "(column 'family').")
        mrmc = rep.mrmc_tables().get("mrmc")
        if mrmc is not None and len(mrmc):
            print(f"\nMRMC (Obuchowski-Rockette/Hillis, random readers and cases): can readers tell true from "
                  f"false positives by their {args.mrmc_question!r} rating?")
            keep = [c for c in mrmc.columns if c not in ("simulated_included", "question", "analysis")]
            print(mrmc[keep].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"tables and figures in {out}")
    return 0


def _primary_analysis(db, name: str, args: argparse.Namespace) -> dict:
    """The declared primary analysis: --primary-stratum / --primary-question, else the study's
    config["primary_analysis"], else all cases x every question."""
    from cfviewer.study import studies

    with db.read() as s:
        cfg = dict(studies.get_study(s, name).config or {})
    declared = dict(cfg.get("primary_analysis") or {})
    strata = args.primary_stratum or declared.get("strata") or ["all"]
    questions = args.primary_question or declared.get("questions") or None
    return {"strata": list(strata), "questions": None if questions is None else list(questions)}


# ----------------------------------------------------------------------------- argparse ---

def register(subparsers: argparse._SubParsersAction) -> None:

    p = subparsers.add_parser("study", help="create and run a reader study",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)

    c = sub.add_parser("create", help="create a study (folder + database)",
                       description="Create a study with the reference study's two questions and, unless "
                                   "--arm is given, its two arms (A: gradient + guided backprop + "
                                   "integrated gradients; B: latentshift-max with the animation).")
    _add_common(c)
    c.add_argument("--bundle", help="model bundle folder used for sampling and precompute (checked at once: "
                                    "bundle.json and the weights files; stored relative to the study folder "
                                    "when inside it)")
    c.add_argument("--seed", type=int, default=0, help="study seed (cohort draw, reading orders)")
    c.add_argument("--arm", action="append", metavar="'NAME=m1,m2'", help="an arm and its explainers (repeat)")
    c.add_argument("--arms-json", metavar="FILE", help='arms with params: [{"name":..., "methods":[{"name":..., "params":{...}}]}]')
    c.add_argument("--pathologies", help="comma-separated pathologies (default: the six of cfviewer.PATHOLOGIES)")
    c.add_argument("--questions", metavar="FILE", help='JSON list of {"key", "text", "anchors": [5 labels]}')
    c.add_argument("--sessions-per-arm", type=int, default=1, help="sessions per arm block (washout; default 1)")
    c.add_argument("--min-gap-hours", type=float, default=0.0, help="minimum hours between sessions (default 0)")
    c.set_defaults(func=cmd_create)

    i = sub.add_parser("import", help="import cases (all or nothing)",
                       description="Import a folder of DICOM/PNG/JPEG cases with a labels CSV (id, path, one 0/1 "
                                   "column per pathology, optional mask_<Pathology> columns) and an optional "
                                   "NIH BBox_List_2017-style boxes CSV. Any bad file or row: nothing is imported "
                                   "and every problem is listed. CSVs: UTF-8 (or UTF-16/32 with a byte-order "
                                   "mark; other encodings with --encoding), comma-, semicolon- or tab-separated. "
                                   "Images below 32 px on the short side are refused; images smaller than the "
                                   "study bundle's input are imported with a warning.",
                       epilog="A relative --labels / --boxes path is looked up in the working directory, else in "
                              "the image folder; if both hold a file of that name with different contents the "
                              "import is refused (pass an absolute path). The report names the CSV used and its "
                              "sha256 (also stored in the study's import record).")
    _add_common(i)
    i.add_argument("folder", help="folder holding the images (paths in the CSV are relative to it)")
    i.add_argument("--labels", required=True,
                   help="labels CSV: an absolute path, or relative to the working directory, else to the image "
                        "folder (refused when both exist and differ)")
    i.add_argument("--boxes", help="boxes CSV: Image Index, Finding Label, x, y, w, h (NIH BBox_List_2017.csv as "
                                   "published); found like --labels")
    i.add_argument("--pathologies", help="comma-separated label columns to require")
    i.add_argument("--absent-pathology", action="append", metavar="NAME",
                   help="a study pathology the labels CSV deliberately has no column for (repeat): its cases are "
                        "unlabelled for it, not negative. Without it a missing pathology column is refused")
    i.add_argument("--encoding", metavar="NAME",
                   help="the CSVs' encoding when it is not UTF-8 and has no byte-order mark, e.g. cp1252")
    i.add_argument("--bbox-map", action="append", metavar="FINDING=PATHOLOGY",
                   help="count boxes of a boxes-CSV finding as a study pathology (repeat), e.g. Nodule=Mass")
    i.add_argument("--bbox-skip-unmapped", action="store_true",
                   help="skip (and count) box rows whose finding is no study pathology and not mapped; "
                        "default: refuse them")
    i.add_argument("--bbox-scale", metavar="auto|FACTOR", default=None,
                   help="multiply box coordinates: a number, or auto = image size / original_width x "
                        "original_height of the labels row, else image side / 1024 (NIH's 1024-px boxes). "
                        "Default 1: boxes in the images' own pixels")
    i.add_argument("--copy", action="store_true", help="copy the files into <study>/cases/ (default: reference)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=cmd_import)

    s = sub.add_parser("sample", help="run the model and draw the cohort (TP/FP per pathology)",
                       description="Predict every case, split predicted positives into true/false positives per "
                                   "pathology with the bundle's thresholds, draw the cohort with a seed and print "
                                   "requested vs available per stratum.")
    _add_common(s)
    s.add_argument("--bundle", help="model bundle folder (default: the study's)")
    s.add_argument("--per-pathology", type=int, default=40, help="cases per pathology (default 40)")
    s.add_argument("--fp-fraction", type=float, default=0.5, help="share of false positives (default 0.5)")
    s.add_argument("--pathologies", help="comma-separated (default: the study's)")
    s.add_argument("--seed", type=int, default=None, help="draw seed (default: the study seed)")
    s.add_argument("--fill", action="store_true", help="top a short stratum up from the other one")
    s.add_argument("--replace", action="store_true", help="draw again (only before readers are scheduled)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("readers", help="add readers (prints their links once), schedule, list progress",
                       description="Add readers (each gets a random token; its link is printed once, only the "
                                   "hash is stored), build the crossover schedule of new readers, and list "
                                   "everyone's progress.")
    _add_common(r)
    r.add_argument("--add", nargs="+", metavar="NAME", help="reader names to add")
    r.add_argument("--reschedule", action="store_true", help="rebuild every reader's schedule (no answers yet)")
    r.add_argument("--base-url", help="app URL for the links (default http://localhost:8501/)")
    r.set_defaults(func=cmd_readers)

    pc = sub.add_parser("precompute", help="compute every explanation file (resumable)",
                        description="Compute and store every artifact for every (case, arm): maps, overlays, "
                                    "GIFs, counterfactuals, explanation JSON, plus a SHA-256 manifest. Skips "
                                    "what is up to date; two runs at once share the work.")
    _add_common(pc)
    pc.add_argument("--bundle", help="model bundle folder (default: the study's)")
    pc.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    pc.add_argument("--force", action="store_true", help="recompute even what is up to date")
    pc.add_argument("--limit", type=int, help="only the first N (case, arm) pairs")
    pc.add_argument("--quiet", action="store_true", help="no progress bar")
    pc.set_defaults(func=cmd_precompute)

    st = sub.add_parser("status", help="cases, cohort, readers' progress, precompute state",
                        description="Show the study: cohort per pathology and stratum, arms, readers' progress, "
                                    "and whether every artifact exists with its recorded sha256.")
    _add_common(st)
    st.add_argument("--no-verify", action="store_true", help="do not re-hash artifact files")
    st.set_defaults(func=cmd_status)

    e = sub.add_parser("export", help="long-format CSV + Parquet, study JSON, SHA-256 manifest",
                       description="Write responses.csv / responses.parquet (one row per reader x case x arm x "
                                   "question), study.json and MANIFEST.sha256. Simulated readers' answers are "
                                   "left out unless --include-simulated; then their rows have simulated=True and "
                                   "study.json / manifest.json say simulated_included: true.")
    _add_common(e)
    e.add_argument("--out", help="output folder (default <study>/export)")
    _add_simulated_flags(e, "export")
    e.set_defaults(func=cmd_export)

    a = sub.add_parser("analyze", help="paired Wilcoxon tests and MRMC analysis between two arms (+ tables, figures)",
                       description="Run cfviewer.analysis.analyze on the study's answers; writes comparison, "
                                   "summary, kappa and alpha CSVs, the MRMC analysis of the confidence rating "
                                   "(mrmc*.csv, roc.html), analysis.json and Plotly HTML figures. "
                                   "Simulated readers' answers are left out unless --include-simulated; then "
                                   "the title, every CSV (column simulated_included) and every figure say so.")
    _add_common(a)
    a.add_argument("--out", help="output folder (default <study>/analysis)")
    a.add_argument("--arm-a", default=None, help="reference arm (default: first in sorted order)")
    a.add_argument("--arm-b", default=None, help="compared arm (differences are B - A)")
    a.add_argument("--zero-method", default="pratt",
                   help="Wilcoxon zero-difference handling: pratt (default), wilcox or zsplit")
    a.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the r CI")
    a.add_argument("--seed", type=int, default=0)
    _add_simulated_flags(a, "analyse")
    a.add_argument("--no-figures", action="store_true", help="tables only")
    a.add_argument("--primary-stratum", action="append", metavar="KIND",
                   help="stratum kind(s) of the primary (confirmatory) analysis: all (default), stratum, "
                        "pathology, reader, case_mean; Holm adjusts within the primary family, the other rows "
                        "are exploratory (default: the study's config primary_analysis, else all)")
    a.add_argument("--primary-question", action="append", metavar="KEY",
                   help="question(s) of the primary analysis (default: every question)")
    a.add_argument("--mrmc-question", default="confidence",
                   help="the rating used as the MRMC score for 'the prediction is right' (TP vs FP); "
                        "default confidence")
    a.add_argument("--no-mrmc", action="store_true", help="skip the MRMC analysis")
    a.set_defaults(func=cmd_analyze)
