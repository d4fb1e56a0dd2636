"""The ``spr`` command.

    spr demo [--quick] [--out runs/demo] [--threads auto]
                                                the whole workflow on a small CNN (make run)
    spr prune --out DIR [--preset quick|cpu|paper] [--config FILE] [--arch resnet20] ...
                                                the paper's protocol; resumes after interruption

Every :class:`spr.PruneConfig` field is an option of ``spr prune`` (``--epochs-spr 30``,
``--no-augment``, ``--train-samples none``); the settings come from the defaults, then the
preset, then the ``--config`` JSON file, then the options given (each overriding the one
before). ``--threads`` (both commands) sets torch's CPU threads; ``auto`` leaves the busy cores
to the programs that use them (:mod:`spr._threads`).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from spr._config import HELP, PruneConfig
from spr._presets import PRESET_HELP, PRESETS
from spr._threads import parse_threads

_EXIT_ERROR, _EXIT_INTERRUPTED = 2, 130


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


_METAVARS = {"arch": "NAME", "dataset": "NAME", "penalty": "{spr,group_lasso}",
             "penalty_weights": "{uniform,macs}", "groups": "{conv_bn,conv,linear}",
             "device": "DEVICE", "data_root": "DIR"}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(PruneConfig)
    group = parser.add_argument_group(
        "pipeline settings (spr.PruneConfig)", textwrap.fill(
            "Each overrides the preset and the --config file. The defaults shown are "
            "PruneConfig's, used where neither sets the value; 'none' unsets a setting that "
            "may be unset.", 79, initial_indent="  ", subsequent_indent="  "))
    for f in fields(PruneConfig):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        flags = (flag, "--data") if f.name == "dataset" else (flag,)
        default = None if f.default is MISSING else f.default
        args = typing.get_args(hint)
        text = f"{HELP[f.name]} (default: {'none' if default is None else default})"
        text = text.replace("%", "%%")
        if hint is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
            continue
        kind = next((a for a in args if a is not type(None)), hint)
        parse = _parse_optional(kind) if type(None) in args else kind
        metavar = _METAVARS.get(f.name, kind.__name__.upper())
        if type(None) in args:
            metavar += "|none"
        # SUPPRESS: an option that is not given is absent, so an explicit `none` overrides
        group.add_argument(*flags, dest=f.name, type=parse, default=argparse.SUPPRESS,
                           metavar=metavar, help=text)


def _config_from(args: argparse.Namespace) -> PruneConfig:
    """Defaults, then the preset, then the --config file, then the options given."""
    values = PruneConfig().to_dict()
    preset = getattr(args, "preset", None)
    if preset is not None:
        values.update(PRESETS[preset])
    if getattr(args, "config", None):
        values.update(PruneConfig.read_settings(args.config))
    names = {f.name for f in fields(PruneConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return PruneConfig.from_dict(values)


def _threads_option(parser: argparse.ArgumentParser, resumable: bool = False) -> None:
    parser.add_argument(
        "--threads", type=parse_threads, default=None, metavar="N|auto",
        help="CPU threads of torch: an integer >= 1, or auto (default): the cores less the "
             "one-minute load average, at least 1, so a busy machine is not oversubscribed "
             "(OMP_NUM_THREADS, if set, wins over auto)" + (
                 "; a resumed run keeps its checkpoint's count" if resumable else ""))


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
    _threads_option(demo)
    prune = commands.add_parser(
        "prune", help="train with SPR, prune, fine-tune and save (resumable)",
        description=textwrap.fill(
            "The paper's protocol as one resumable run: dense reference training, training "
            "with the penalty from the same initialisation, threshold search, removal of the "
            "dead filters, fine-tuning; the pruned model is saved to DIR/pruned, the numbers "
            "(with the input padding the model expects) to DIR/results.json. After every epoch "
            "a checkpoint is written; the same command continues an interrupted run. Every "
            "setting is checked before anything is written. Settings: the defaults, then "
            "--preset, then --config, then the options given, each overriding the one before. "
            "Before training, the time the run will take is estimated from a few timed steps "
            "(with a warning if it is over an hour).", 79),
        epilog="presets:\n" + "\n".join(
            textwrap.fill(PRESET_HELP[name], 79, initial_indent=f"  {name:<7} ",
                          subsequent_indent=" " * 10) for name in PRESETS)
        + "\n\nexamples:\n  spr prune --out runs/quick --preset quick\n"
        "  spr prune --out runs/r20 --preset cpu --lam 15\n"
        "  spr prune --out runs/r20 --config my_run.json --threads 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="run folder: created if absent; a folder holding this run's "
                            "checkpoint resumes it")
    prune.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="a starting set of settings: quick (minutes on a 2-core CPU), cpu "
                            "(a few hours), paper (the paper's 300+300+200-epoch schedule); "
                            "see below")
    prune.add_argument("--config", type=Path, metavar="FILE",
                       help="JSON object of PruneConfig settings (e.g. {\"lam\": 10.0}); "
                            "overrides the preset")
    prune.add_argument("--restart", action="store_true",
                       help="discard the folder's checkpoint, SPR model and results and start "
                            "over (the dense reference is kept if its settings are unchanged)")
    prune.add_argument("--no-progress", action="store_true", help="no progress bars")
    _threads_option(prune, resumable=True)
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
            from spr._threads import set_threads

            threads, why = set_threads(args.threads)
            print(f"torch threads: {threads} ({why})")
            run_demo(args.out, quick=args.quick, data_root=args.data_root,
                     progress=not args.no_progress)
        else:
            from spr._pipeline import run_pipeline

            config = _config_from(args)  # every setting checked before anything runs
            summary = run_pipeline(config, args.out, restart=args.restart,
                                   progress=not args.no_progress,
                                   threads="auto" if args.threads is None else args.threads)
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
    except FloatingPointError as err:  # the loss diverged: the message names the fix
        print(f"spr: error: {err}; the run's last checkpoint is kept (--restart to start over "
              "with the new settings)" if args.command == "prune" else f"spr: error: {err}",
              file=sys.stderr)
        return _EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
