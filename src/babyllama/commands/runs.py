"""babyllama runs: list, inspect, compare and report on the run folders under ./runs (or --runs_dir)."""

from pathlib import Path

from babyllama.errors import BabyLlamaError

HELP = "list, show, compare and report on training runs (pretrain, sft, dpo)"


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("list", "a table of all runs"),
                            ("show", "one run: config, lineage, metrics, samples, where it is tracked"),
                            ("compare", "config differences, metrics side by side and overlaid loss curves"),
                            ("report", "write <run>/report.md with loss, learning-rate, throughput, grad-norm plots")):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("--runs_dir", default="runs", help="folder that holds the run folders (default: runs)")
        if name in ("show", "report"):
            action.add_argument("run", help="run name (a folder under --runs_dir) or a run folder path")
        if name == "compare":
            action.add_argument("runs", nargs="+", metavar="RUN", help="two or more run names or folders")
            action.add_argument("--out", default=None,
                                help="where to save the overlaid loss curves (default: <runs_dir>/compare-<runs>.png)")


def run(args) -> int:
    from babyllama.records import registry, report

    runs_dir = Path(args.runs_dir)
    if args.action == "list":
        runs = registry.find_runs(runs_dir)
        if not runs:
            print(f"no runs in {runs_dir}")
            return 0
        print(report.list_text(runs))
    elif args.action == "show":
        print(report.show_text(registry.resolve_run(args.run, runs_dir)))
    elif args.action == "compare":
        if len(args.runs) < 2:
            raise BabyLlamaError("runs compare needs at least two runs")
        runs = [registry.resolve_run(name, runs_dir) for name in args.runs]
        print(report.compare_text(runs))
        from babyllama.records.plots import compare_plot

        out = Path(args.out) if args.out else runs_dir / ("compare-" + "-".join(r.name for r in runs)[:120] + ".png")
        from babyllama.pathchecks import check_writable_file

        check_writable_file("--out", out, {f"run {r.name}": str(r.folder) for r in runs})
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"\nloss curves (by step and by tokens): {compare_plot(runs, out)}")
    elif args.action == "report":
        run = registry.resolve_run(args.run, runs_dir)
        path = report.write_report(run)
        print(f"wrote {path}")
        for problem in run.problems[:5]:
            print(f"note: {problem}")
        if len(run.problems) > 5:
            print(f"note: ... and {len(run.problems) - 5} more (listed in {path.name})")
    return 0
