"""README.md's "Try it" block, run verbatim by bash on the data of ``nlpmon sample``, in order.

Every line must exit 0 (``set -e``), and what the commands made is what the README says: a profile built with
the sample's tokenizer and encoder, drift flagged in the drifted half, windows stored, a re-evaluation report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[3]


def try_it_block() -> str:
    """The first ``sh`` code block after the README's "## Try it" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it"):]
    return re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)


def test_the_block_starts_from_the_sample_and_names_only_sample_files():
    commands = [line.split("#", 1)[0] for line in try_it_block().splitlines()]
    assert commands[0].startswith("nlpmon sample ./try && cd try")
    # No placeholder, elision or optional part: the block is run as it reads.
    assert not [c for c in commands if "/models/" in c or "..." in c or "[" in c]


def test_the_readme_try_it_block_runs_verbatim(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `nlpmon` on PATH is this checkout's code, whatever the venv has installed.
    (bin_dir / "nlpmon").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m monitor.cli "$@"\n')
    (bin_dir / "nlpmon").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", "set -x\n" + try_it_block()], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-4000:]
    d = tmp_path / "try"
    profile = json.loads((d / "sentiment-profile.json").read_text())
    assert profile["tokenizer"]["max_length"] == 64  # the sample tokenizer's model_max_length, not 512
    assert profile["embedding"]["source"] == "encoder"
    table = [ln for ln in result.stdout.splitlines() if ln.startswith("sentiment/1")]
    assert len(table) >= 3 and not table[0].rstrip().endswith(("in", "emb")) and "in" in table[-1].split()[-1]
    history = [ln for ln in result.stdout.splitlines() if ln.startswith("1 ")]
    assert len(history) == len(table)
    assert "accuracy" in result.stdout
