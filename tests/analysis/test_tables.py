"""The docs' tables are rendered from the committed result files: they agree now, and a
changed file makes `tools/render_docs.py --check` fail until the docs are re-rendered."""

import json
import os

import pytest

from pasa_det.analysis.tables import BLOCK, render_document
from tests.helpers.paths import ROOT
from tests.helpers.scripts import run_tool


def test_committed_docs_match_their_result_files():
    run = run_tool("render_docs.py", "--check", timeout=120)
    assert run.returncode == 0, run.stderr


def test_every_result_file_is_shown_somewhere():
    shown = set()
    for name in ["README.md"] + [f"docs/{f}" for f in os.listdir(os.path.join(ROOT, "docs"))]:
        with open(os.path.join(ROOT, name)) as f:
            shown |= {p for m in BLOCK.finditer(f.read()) for p in m["paths"].split()}
    committed = {
        os.path.relpath(os.path.join(folder, f), ROOT)
        for folder, _, files in os.walk(os.path.join(ROOT, "results"))
        for f in files
        if f.endswith(".json")
    }
    assert committed and committed <= shown


def _transcribed(path, value):
    data = {
        "environment": {"date": "2026-01-02", "cpu": "test CPU", "cpu_cores": 2},
        "columns": ["metric", "none"],
        "rows": [["AP", value]],
    }
    path.write_text(json.dumps(data))


def test_a_changed_result_file_changes_the_table(tmp_path):
    _transcribed(tmp_path / "r.json", "12.5")
    doc = "Text.\n<!-- table transcribed r.json -->\nold\n<!-- end table -->\nMore.\n"
    rendered = render_document(doc, str(tmp_path))
    assert "| AP | 12.5 |" in rendered and "old" not in rendered
    assert "2026-01-02, test CPU, 2 cores" in rendered
    assert render_document(rendered, str(tmp_path)) == rendered
    _transcribed(tmp_path / "r.json", "13.0")
    assert "| AP | 13.0 |" in render_document(rendered, str(tmp_path))


def test_a_missing_result_file_is_named(tmp_path):
    doc = "<!-- table transcribed results/gone.json -->\n<!-- end table -->\n"
    with pytest.raises(FileNotFoundError, match=r"results/gone\.json is named by a table block"):
        render_document(doc, str(tmp_path))
