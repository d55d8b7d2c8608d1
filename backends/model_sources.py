"""Turn model weights that ship in other forms into Hugging Face folders that engines load.

Run as ``python -m backends.model_sources gguf-package ...`` (or ``tiny-random ...``, which builds a tiny
random-weight checkpoint of a model family, see ``backends.tiny_checkpoints``) by the gateway, so the gateway
process never imports torch. Nothing is fetched from a model hub: GGUF files come from installed Python
packages.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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


def load_gguf_tokenizer(gguf_path: Path) -> Any:
    """The tokenizer stored in a GGUF file, as a transformers tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


def load_tokenizer_cached(gguf_path: Path, cache_dir: Path | None) -> Any:
    """The GGUF file's tokenizer, saved once as a Hugging Face tokenizer under ``cache_dir`` (seconds
    faster to load than parsing the GGUF file again for every tiny checkpoint)."""
    if cache_dir is None:
        return load_gguf_tokenizer(gguf_path)
    from transformers import AutoTokenizer

    folder = cache_dir / f"{gguf_path.stem}-{gguf_path.stat().st_size}"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = load_gguf_tokenizer(gguf_path)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return tokenizer


def _build_tiny(args: argparse.Namespace, started: float) -> int:
    from backends.tiny_checkpoints import TinySpec, build_tiny_checkpoint

    spec = TinySpec(
        architecture=args.architecture,
        chat_template=args.chat_template,
        seed=args.seed,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_size=args.intermediate_size,
        max_positions=args.max_positions,
    )
    try:
        tokenizer_source = find_package_file(args.tokenizer_package, args.tokenizer_file)
    except WeightsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loading the tokenizer from {tokenizer_source.name}", flush=True)
    tokenizer = load_tokenizer_cached(tokenizer_source, args.tokenizer_cache)
    print(f"building a tiny {spec.architecture} checkpoint (seed {spec.seed}, float32)", flush=True)
    build_tiny_checkpoint(spec, tokenizer, args.out)
    print(f"built in {time.monotonic() - started:.1f}s -> {args.out}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.model_sources")
    sub = parser.add_subparsers(dest="command", required=True)
    gguf = sub.add_parser("gguf-package", help="convert a GGUF file shipped in a Python package")
    gguf.add_argument("--package", required=True)
    gguf.add_argument("--file", required=True)
    gguf.add_argument("--dtype", default="float32")
    gguf.add_argument("--out", required=True, type=Path)
    tiny = sub.add_parser("tiny-random", help="build a tiny random-weight checkpoint of a model family")
    tiny.add_argument("--architecture", required=True)
    tiny.add_argument("--chat-template", required=True)
    tiny.add_argument("--tokenizer-package", required=True)
    tiny.add_argument("--tokenizer-file", required=True)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden-size", type=int, default=128)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--intermediate-size", type=int, default=256)
    tiny.add_argument("--max-positions", type=int, default=1024)
    tiny.add_argument("--tokenizer-cache", type=Path, default=None)
    tiny.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.command == "tiny-random":
        return _build_tiny(args, started)
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
