"""Turn model weights that ship in other forms into Hugging Face folders that engines load.

Run as ``python -m backends.model_sources gguf-package ...`` by the gateway (so the gateway process never
imports torch). Nothing is fetched from a model hub: the GGUF file comes from an installed Python package.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class WeightsUnavailable(RuntimeError):
    """The weights cannot be found on this machine."""


def find_package_file(package: str, file: str) -> Path:
    """Locate ``file`` inside an installed package without importing it (its imports may be heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"the Python package {package!r} is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / file
        if candidate.is_file():
            return candidate
    raise WeightsUnavailable(f"package {package!r} has no file {file!r}")


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str) -> None:
    """Dequantize a GGUF checkpoint into a Hugging Face folder (weights, config, tokenizer, template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch_dtype[dtype],
    )
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # atomic: a folder that exists is complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.model_sources")
    sub = parser.add_subparsers(dest="command", required=True)
    gguf = sub.add_parser("gguf-package", help="convert a GGUF file shipped in a Python package")
    gguf.add_argument("--package", required=True)
    gguf.add_argument("--file", required=True)
    gguf.add_argument("--dtype", default="float32")
    gguf.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        source = find_package_file(args.package, args.file)
    except WeightsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"converting {source.name} to a {args.dtype} Hugging Face folder", flush=True)
    convert_gguf(source, args.out, args.dtype)
    print(f"converted in {time.monotonic() - started:.1f}s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
