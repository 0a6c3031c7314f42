"""``fastcap evaluate``: BLEU-1..4 and CIDEr-D of a checkpoint's captions over a split."""
import json
import os

import numpy as np

from ..runtime.files import atomic_write_text, check_target
from ..runtime.precision import use_precision
from ..train.evaluation import evaluate_captions
from ..train.metrics import METRIC_LABELS
from .common import (add_inference_parser, describe_ckpt, inference_precision, inputs,
                     load_for_inference, setup_runtime)

# What `evaluate --json` writes before the metrics; a JSON object with them is one it wrote.
RESULT_KEYS = ("checkpoint", "data", "split", "images", "references", "decoding")


def add_parser(sub, parents):
    return add_inference_parser(sub, parents, "evaluate")


def is_evaluation_json(path):
    """Whether ``path`` (a regular file) holds the results `fastcap evaluate --json` writes."""
    try:
        if os.path.getsize(path) > 1 << 20:
            return False
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(result, dict) and all(k in result for k in RESULT_KEYS)


def _json_target(args, ckpt=None):
    return check_target(args.json, what="--json", inputs=inputs(args, ckpt),
                        overwrite=args.overwrite, ours=is_evaluation_json)


def run(args):
    setup_runtime(args)
    if args.json not in (None, "-"):  # before the work it would be lost after
        _json_target(args)
    ckpt, model, data, source = load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.max_images:
        ids = ids[: args.max_images]
    with use_precision(inference_precision(args, ckpt)):
        m, ids, refs, _ = evaluate_captions(model, data, args.split, ids, args.beam_size,
                                            args.max_length)
    decoding = "greedy" if args.beam_size == 1 else f"beam{args.beam_size}"
    result = {**dict(zip(RESULT_KEYS, (ckpt.path, source, args.split, len(ids),
                                       sum(len(r) for r in refs), decoding))), **m}
    if args.json is not None:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
            return 0
        atomic_write_text(_json_target(args, ckpt), text + "\n")
    print(f"checkpoint {describe_ckpt(ckpt)}")
    print(f"{args.split}: {result['images']} images, {result['references']} reference captions, "
          f"{'greedy decoding' if args.beam_size == 1 else f'beam search (beam {args.beam_size})'}")
    for key, label in METRIC_LABELS.items():
        print(f"  {label:7s} {m[key]:.4f}")
    if args.json not in (None, "-"):
        print(f"wrote {args.json}")
    return 0


def prints_its_product(args):
    return args.json in (None, "-")  # the metrics printed, unless written to a --json file
