"""The trainer's ids against the Yuan team's preprocessing run for real (transformers 4.36's slow LlamaTokenizer).

`scripts/yuan_pipeline_check.py` installs transformers 4.36.2 into `.venv-compat/` once
(pip, a few MB) and encodes about 3,000 lines there exactly as
`tools/preprocess_data_yuan.py` does; the trainer encodes the same `.txt` file through
`load_examples` and `encode_example`. Only the by-design differences may remain.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_trainer_ids_equal_yuans_own_preprocessing() -> None:
    spec = importlib.util.spec_from_file_location("yuan_pipeline_check", ROOT / "scripts" / "yuan_pipeline_check.py")
    assert spec and spec.loader
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "lines.txt"
        lines.write_text("\n".join(check.default_lines()) + "\n", encoding="utf-8")
        result = check.check(lines, check.FIXTURE, "4.36.2")
    assert result["lines"] > 3000
    assert result["other"] == 0, result["differing"]
    # What differs by design is only text holding a literal <sep>/<eod> (kept as text here).
    assert result["identical"] + result["literal_delimiter"] + result["whitespace_response"] == result["lines"]
    assert result["identical"] / result["lines"] > 0.95
