"""detectron2's command line, read the way users type it: a switch such as --resume is
honoured after the trailing KEY VALUE overrides too, where argparse would hand it to the
config as a key."""

import argparse

# Switches of detectron2's default_argument_parser that take no value.
SWITCHES = {"--resume": "resume", "--eval-only": "eval_only"}


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """`parser.parse_args`, then switches found among `opts` moved to their flags; any other
    `--option` there is an error naming it (options go before the overrides)."""
    args = parser.parse_args(argv)
    opts = []
    for item in args.opts:
        if item in SWITCHES:
            setattr(args, SWITCHES[item], True)
        elif item.startswith("--"):
            parser.error(
                f"{item} comes after the KEY VALUE overrides, which take everything after the "
                "first key: put it before them"
            )
        else:
            opts.append(item)
    args.opts = opts
    return args
