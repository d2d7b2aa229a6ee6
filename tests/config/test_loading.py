"""Bad configs end in a ConfigError naming the file or override, the key, and a fix.
(Build-time MODEL.ANTIALIAS checks, e.g. GROUP not dividing a stage: modeling/test_backbones.py.)"""

import pytest

from pasa_det.config import ConfigError, load_config
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool


def write_config(path, body):
    path.write_text(f'_BASE_: "{QUICK_INSTANCE}"\n' + body)
    return str(path)


def test_unknown_key_in_a_file_is_named_with_the_closest_valid_key(tmp_path):
    config = write_config(tmp_path / "typo.yaml", "MODEL:\n  ANTIALIAS:\n    GRUOP: 4\n")
    with pytest.raises(
        ConfigError,
        match=r"typo\.yaml: unknown config key MODEL\.ANTIALIAS\.GRUOP; did you mean MODEL\.ANTIALIAS\.GROUP\?",
    ):
        load_config(config)


def test_unknown_override_is_named_with_the_closest_valid_key():
    with pytest.raises(
        ConfigError,
        match=r"command-line overrides: unknown config key SOLVER\.MAX_ITERS; did you mean SOLVER\.MAX_ITER\?",
    ):
        load_config(QUICK_INSTANCE, ["SOLVER.MAX_ITERS", "10"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"Type mismatch.*MODEL\.ANTIALIAS\.KERNEL_SIZE"):
        load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.KERNEL_SIZE", "'three'"])


@pytest.mark.parametrize(
    "key,value,expected",
    [
        (
            "MODEL.ANTIALIAS.KERNEL_SIZE",
            "4",
            r"MODEL\.ANTIALIAS\.KERNEL_SIZE must be an odd integer.*got 4",
        ),
        ("MODEL.ANTIALIAS.TYPE", "blur", r"MODEL\.ANTIALIAS\.TYPE must be one of .*'blur'"),
        ("MODEL.ANTIALIAS.GROUP", "0", r"MODEL\.ANTIALIAS\.GROUP must be a positive integer"),
        ("MODEL.ANTIALIAS.NORM", "'LayerNorm'", r"MODEL\.ANTIALIAS\.NORM='LayerNorm' cannot"),
        ("MODEL.ANTIALIAS.INIT", "'binomial'", r"MODEL\.ANTIALIAS\.INIT must be one of"),
        (
            "MODEL.ANTIALIAS.NORM",
            "''",
            r"MODEL\.ANTIALIAS\.INIT='lpf' sets the logit norm's shift.*init='random'",
        ),
        ("TEST.SHIFT_CONSISTENCY.SHIFTS", "[0, 2]", r"SHIFTS must list positive integers"),
        ("TEST.SHIFT_CONSISTENCY.MATCH_IOU", "1.5", r"MATCH_IOU must lie in \[0, 1\], got 1\.5"),
        ("TEST.SHIFT_CONSISTENCY.NUM_PAIRS", "0", r"NUM_PAIRS must be >= 1"),
    ],
)
def test_invalid_pasa_det_values_fail_at_load(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(QUICK_INSTANCE, [key, value])


def test_missing_base_names_it_and_the_config_that_referenced_it(tmp_path):
    middle = tmp_path / "middle.yaml"
    middle.write_text('_BASE_: "gone/Base.yaml"\n')
    top = tmp_path / "top.yaml"
    top.write_text('_BASE_: "middle.yaml"\n')
    with pytest.raises(
        ConfigError,
        match=r"middle\.yaml: its _BASE_ 'gone/Base\.yaml' does not exist \(looked for .*gone/Base\.yaml\)",
    ):
        load_config(str(top))


def test_train_net_reports_a_config_error_in_one_line(tmp_path):
    run = run_tool(
        "train_net.py",
        "--config-file",
        QUICK_INSTANCE,
        "MODEL.ANTIALIAS.GRUOP",
        "4",
        timeout=300,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: command-line overrides: unknown config key MODEL.ANTIALIAS.GRUOP; did you mean MODEL.ANTIALIAS.GROUP?"
    )
    assert "Traceback" not in run.stderr
