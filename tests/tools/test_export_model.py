"""tools/export_model.py: the quick config's model in both formats, checked against eager,
and one `error:` line for bad input."""

import pytest

from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import load_script, run_tool

SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/export_model.py")


@pytest.mark.slow
def test_exports_torchscript_and_prints_the_difference(tool, tmp_path, capsys):
    args = ["--config-file", QUICK_INSTANCE, "--format", "torchscript", "--output", str(tmp_path)]
    assert tool.main([*args, *SMALL]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'model.ts'}; on the 64x64 sample its 5 outputs" in printed
    assert "differ from the eager model's by at most 0;" in printed and "UNTRAINED" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "tflite"], "error: --format 'tflite': choose one of torchscript, onnx"),
        (
            ["--format", "onnx", "--sample-image", "nowhere.jpg"],
            "error: --sample-image nowhere.jpg: no such file",
        ),
        (
            ["--format", "onnx", "--export-method", "scripting"],
            "error: --export-method 'scripting'",
        ),
        (
            ["--format", "onnx", "MODEL.NO_SUCH_KEY", "1"],
            "error: command-line overrides: unknown config key",
        ),
    ],
)
def test_bad_input_is_one_error_line(tool, tmp_path, args, message):
    with pytest.raises(SystemExit) as exit:
        tool.main(["--config-file", QUICK_INSTANCE, "--output", str(tmp_path), *args])
    assert str(exit.value.code).startswith(message) and "\n" not in str(exit.value.code)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt, name", [("torchscript", "model.ts"), ("onnx", "model.onnx")])
def test_quick_config_exports_as_a_user_runs_it(fmt, name, tmp_path):
    result = run_tool(
        "export_model.py",
        "--config-file",
        QUICK_INSTANCE,
        "--format",
        fmt,
        "--export-method",
        "tracing",
        "--output",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        tmp_path / name
    ).is_file() and "differ from the eager model's by at most" in result.stdout
    difference = float(result.stdout.split("by at most ")[1].split(";")[0])
    assert difference <= (0 if fmt == "torchscript" else 1e-2)
