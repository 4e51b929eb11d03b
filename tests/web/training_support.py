"""Shared pieces of the training tests: a tiny base checkpoint and a recipe that trains in seconds."""

import subprocess
import sys
from pathlib import Path

from training.recipes import Recipe

from .conftest import REPO_ROOT

# yuan2_tiny-sized LoRA run: 64-token rows, a checkpoint every 2 steps, short generations.
# A full fine-tune: in 8 steps it reliably lowers the held-out loss of a random tiny
# model (it learns the byte statistics), which a rank-4 adapter does not.
TINY_RECIPE = Recipe(method="full", max_steps=8, micro_batch_size=2, lr=3e-3, warmup_steps=1, seq_len=64,
                     lora_r=4, lora_alpha=8.0, checkpoint_every=2, eval_max_new_tokens=8)


def make_tiny_base(out: Path) -> Path:
    """A random yuan2_tiny checkpoint in the HF layout (the trainer's own `init`, as a subprocess)."""
    if not (out / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "trainer", "init", "--preset", "yuan2_tiny", "--out", str(out)],
                       cwd=REPO_ROOT, check=True, capture_output=True)
    return out


def write_general_subset(out: Path, lines: int = 3) -> Path:
    """A few rows of the shipped general set, so e2e evaluations stay short on 2 cores."""
    rows = (REPO_ROOT / "trainer" / "assets" / "general.jsonl").read_text(encoding="utf-8").splitlines()[:lines]
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out
