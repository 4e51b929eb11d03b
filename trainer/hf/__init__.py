"""`transformers` remote code for released checkpoints.

`write_remote_code(folder)` makes a checkpoint folder written by
`trainer.checkpoint.save_model` load the way Yuan users load models:

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

It copies three files into the folder: `modeling_yuan.py` and
`configuration_yuan.py` (this package) and `yuan_lfa.py`, a byte-for-byte copy of
`trainer/model.py` (which imports only torch) that `modeling_yuan.py` imports
relatively; transformers' dynamic-module loader copies such relative imports
along. `config.json` gets an `auto_map` naming the two classes, every other key
is kept. A folder with a sentencepiece `tokenizer.model` (whose configs
`tokenizer_files.write_sentencepiece_tokenizer` writes) also gets
`tokenization_yuan.py`, the tokenizer class its `tokenizer_config.json` names for

    AutoTokenizer.from_pretrained(folder, trust_remote_code=True)

This module itself imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: The network, copied into each release as `yuan_lfa.py`.
MODEL_SOURCE = _HERE.parent / "model.py"
REMOTE_FILES = ("configuration_yuan.py", "modeling_yuan.py")
#: The tokenizer class, shipped only next to a sentencepiece `tokenizer.model`
#: (a folder with the byte tokenizer's `tokenizer.json` needs no remote code).
TOKENIZER_REMOTE_FILE = "tokenization_yuan.py"
LFA_MODULE = "yuan_lfa.py"
AUTO_MAP = {
    "AutoConfig": "configuration_yuan.YuanConfig",
    "AutoModelForCausalLM": "modeling_yuan.YuanForCausalLM",
}


def write_remote_code(folder: str | Path) -> None:
    """Copy the remote-code files into `folder` and point `config.json`'s `auto_map` at them."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: missing config.json (write the checkpoint before its remote code)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")

    shutil.copyfile(MODEL_SOURCE, folder / LFA_MODULE)
    for name in REMOTE_FILES:
        shutil.copyfile(_HERE / name, folder / name)
    if (folder / "tokenizer.model").is_file():
        shutil.copyfile(_HERE / TOKENIZER_REMOTE_FILE, folder / TOKENIZER_REMOTE_FILE)

    # Keep auto_map entries of other Auto classes whose code is in the folder (a
    # reference checkpoint's entries point at files that are not, e.g. yuan_hf_model.py).
    auto_map = {}
    for key, value in (config.get("auto_map") or {}).items():
        refs = value if isinstance(value, list) else [value]
        if key not in AUTO_MAP and all(_module_file_exists(folder, ref) for ref in refs if ref):
            auto_map[key] = value
    auto_map.update(AUTO_MAP)
    config["auto_map"] = auto_map
    config["model_type"] = "yuan"
    tmp = config_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(config_path)


def _module_file_exists(folder: Path, ref: str) -> bool:
    """Whether an auto_map reference `module.Class` (optionally `repo--module.Class`) is in `folder`."""
    module = ref.split("--")[-1].rsplit(".", 1)[0]
    return (folder / f"{module.replace('.', '/')}.py").is_file()


__all__ = ["AUTO_MAP", "TOKENIZER_REMOTE_FILE", "write_remote_code"]
