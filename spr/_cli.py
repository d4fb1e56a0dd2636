"""The ``spr`` command.

    spr demo [--quick] [--out runs/demo]        the whole workflow on a small CNN (make run)
    spr prune --out DIR [--config FILE] [--arch resnet20] [--dataset fashion-mnist] ...
                                                the paper's protocol; resumes after interruption

Every :class:`spr.PruneConfig` field is an option of ``spr prune`` (``--epochs-spr 30``,
``--no-augment``, ``--train-samples none``); ``--config`` reads a JSON file of them first.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from spr._config import PruneConfig

_EXIT_ERROR, _EXIT_INTERRUPTED = 2, 130


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(PruneConfig)
    group = parser.add_argument_group("pipeline settings (spr.PruneConfig)")
    for f in fields(PruneConfig):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        flags = (flag, "--data") if f.name == "dataset" else (flag,)
        default = None if f.default is MISSING else f.default
        text = f"default: {default}"
        if hint is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
            continue
        args = typing.get_args(hint)
        kind = next((a for a in args if a is not type(None)), hint)
        parse = _parse_optional(kind) if type(None) in args else kind
        group.add_argument(*flags, dest=f.name, type=parse, default=None,
                           metavar=kind.__name__.upper(), help=text)


def _config_from(args: argparse.Namespace) -> PruneConfig:
    base = PruneConfig.load(args.config) if args.config else PruneConfig()
    names = {f.name for f in fields(PruneConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    # `--data-root none` / `--train-samples none` arrive as None and mean "unset" here; an
    # explicit None therefore cannot override a config file's value (edit the file instead).
    return base.replace(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spr", description="Structured pruning with the Structured Perspective Regularizer."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="the whole workflow on a small CNN, in minutes on a CPU (make run)"
    )
    demo.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    prune = commands.add_parser(
        "prune", help="train with SPR, prune, fine-tune and save (resumable)"
    )
    prune.add_argument("--out", required=True, type=Path, help="run folder (created)")
    prune.add_argument("--config", type=Path, help="JSON file of PruneConfig settings")
    prune.add_argument("--restart", action="store_true",
                       help="discard the folder's checkpoint and start over")
    prune.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_config_options(prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spr`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from spr._pipeline import PipelineError  # late: keeps `spr --help` fast
    from spr._surgery import PruningError
    from spr.data import DatasetNotFoundError

    try:
        if args.command == "demo":
            from spr._demo import run_demo

            run_demo(args.out, quick=args.quick, data_root=args.data_root,
                     progress=not args.no_progress)
        else:
            from spr._pipeline import run_pipeline

            config = _config_from(args)
            summary = run_pipeline(config, args.out, restart=args.restart,
                                   progress=not args.no_progress)
            keys = ("accuracy_dense", "accuracy_finetuned", "params_removed_percent",
                    "macs_removed_percent")
            print(json.dumps({k: round(summary[k], 2) for k in keys}, indent=2))
            print(f"the pruned model is in {args.out / 'pruned'}; results in "
                  f"{args.out / 'results.json'}")
    except KeyboardInterrupt:
        again = ("run the same command again to continue from the last checkpoint"
                 if args.command == "prune" else "the demo starts over when run again")
        print(f"\ninterrupted; {again}", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except (DatasetNotFoundError, PipelineError, PruningError, ValueError, OSError) as err:
        print(f"spr: error: {err}", file=sys.stderr)
        return _EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
