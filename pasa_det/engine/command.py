"""How pasa_det's tools end: a one-line "error: …" for a mistake the message explains, the
signal's message and 128 + its number for a stop, and every process of a multi-process
run stopped when one fails."""

import sys

from detectron2.utils import comm

from pasa_det.checkpoint import CheckpointError
from pasa_det.config import ConfigError
from pasa_det.data.checks import DatasetError
from pasa_det.evaluation.headline_metrics import EvaluationFailed

from .interrupt import StoppedBySignal
from .launch import JobFailed, launch
from .step import NonFiniteLossError

# What a tool reports in one line ("error: …") instead of a traceback: the message says
# which key, file or setting to change.
USER_ERRORS = (ConfigError, DatasetError, CheckpointError, NonFiniteLossError, EvaluationFailed)


def run_reporting_errors(run, args):
    """`run(args)`, ending the process as the module docstring says."""
    try:
        return run(args)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except StoppedBySignal as e:
        if comm.is_main_process():
            print(e, file=sys.stderr)
        sys.exit(128 + e.signum)


def launch_tool(run, args) -> None:
    """`run(args)` in each process detectron2's launch arguments ask for (--num-gpus,
    --num-machines, --machine-rank, --dist-url); a failed process ends the tool with its
    exit code."""
    print("Command Line Args:", args)
    try:
        launch(
            run_reporting_errors,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(run, args),
        )
    except JobFailed as e:
        if e.exit_code <= 128:  # not a stop on a signal, which the workers have explained
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
