"""``lift3d eval``: run a suite, rebuild its report, or score any mesh.

    lift3d eval suites/bundled-text.yaml --out evals/run1                    # local pool
    lift3d eval suites/bundled-text.yaml --out evals/run1 --engine ray --address auto
    lift3d eval report evals/run1
    lift3d eval score --mesh other.glb --prompt "a red house" --out evals/ext
"""

from __future__ import annotations

import argparse
import sys

from lift3d.errors import Lift3DError


def _run_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lift3d eval", description="Run an evaluation suite (see suites/). "
                                 "Also: 'lift3d eval report FOLDER', 'lift3d eval score --mesh ...'.")
    ap.add_argument("suite", help="suite YAML, e.g. suites/bundled-text.yaml")
    ap.add_argument("--out", required=True, help="output folder (new, empty, or this suite's earlier folder to resume)")
    ap.add_argument("--engine", choices=["local", "ray"], default="local", help="local process pool (default) or Ray tasks")
    ap.add_argument("--workers", type=int, default=None, help="local engine: concurrent runs (default: one per core)")
    ap.add_argument("--address", default=None, help="Ray: cluster address ('auto' joins a running cluster; default starts a local one)")
    return ap


def _report_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lift3d eval report", description="Rebuild report.md and report.html of an eval folder.")
    ap.add_argument("folder")
    return ap


def _score_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lift3d eval score", description="Score a mesh from any tool with lift3d's metrics.")
    ap.add_argument("--mesh", required=True, help="GLB, OBJ or PLY file (texture or vertex colours)")
    ap.add_argument("--prompt", default=None, help='the prompt the mesh was made for, e.g. "a red house" (or give --image)')
    ap.add_argument("--image", default=None, help="image-to-3D: the bundled example image the mesh was made from (with its JSON "
                    "sidecar); scored on that image's orbit like lift3d's image-to-3D runs, prompt = its caption")
    ap.add_argument("--out", required=True, help="output folder: new, or an eval folder whose table the mesh joins")
    ap.add_argument("--name", default=None, help="method name in tables (default: the file's name)")
    ap.add_argument("--up", choices=["auto", "z", "y"], default="auto",
                    help="up axis of the file: auto (default: y for GLB/glTF as the glTF spec says, z otherwise), z or y")
    ap.add_argument("--clip-model", default=None, help="local CLIP model directory for a CLIP score")
    ap.add_argument("--align", choices=["auto", "centre", "truth", "none"], default="auto",
                    help="how the mesh is scaled and placed first: centre (its box centred, largest side 1.1 units, the world's "
                    "object size), truth (onto the true object's box, for image-to-3D), none; auto (default): truth with "
                    "--image, else centre")
    ap.add_argument("--yaw", type=float, default=0.0, metavar="DEG",
                    help="turn the mesh about its up axis first, so that its front (the input view) faces +x")
    return ap


def run(argv: list[str]) -> int:
    if argv and argv[0] == "report":
        from lift3d.eval.report import build_report

        md, page = build_report(_report_parser().parse_args(argv[1:]).folder)
        print(f"report: {md} and {page}")
        return 0
    if argv and argv[0] == "score":
        from lift3d.eval.report import build_report
        from lift3d.eval.score_mesh import score_mesh

        args = _score_parser().parse_args(argv[1:])
        if args.prompt is None and args.image is None:
            raise Lift3DError("give --prompt (text-to-3D) or --image (image-to-3D) for the mesh")
        row = score_mesh(args.mesh, args.prompt, args.out, args.name, args.up, args.clip_model, align=args.align,
                         yaw_deg=args.yaw, image=args.image)
        print("  ".join(f"{k}={v:.4f}" for k, v in row["metrics"].items()))
        md, page = build_report(args.out)
        print(f"results in {args.out}/results.jsonl; report: {md} and {page}")
        return 0
    from lift3d.eval.report import build_report
    from lift3d.eval.runner import run_suite

    args = _run_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise Lift3DError(f"--workers {args.workers}: give at least 1")
    rows = run_suite(args.suite, args.out, args.engine, args.workers, args.address)
    md, page = build_report(args.out)
    failed = [r for r in rows if r.get("status") != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} runs ok; results in {args.out}/results.jsonl; report: {md} and {page}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except Lift3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    sys.exit(code)
