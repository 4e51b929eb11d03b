"""The JSON file every GPU benchmark writes: card, versions and date, then its rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch


def write_results(path: str | Path, rows: list[dict], **extra: object) -> None:
    """Write `{"card", "torch", "date", **extra, "rows"}` to `path` (folders made as needed)."""
    out = {"card": torch.cuda.get_device_name(), "torch": torch.__version__, "date": dt.date.today().isoformat(),
           **extra, "rows": rows}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
