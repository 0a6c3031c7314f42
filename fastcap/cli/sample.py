"""``fastcap sample``: ground-truth and generated captions of images of a split, by a checkpoint."""
import json

import numpy as np

from ..runtime.precision import use_precision
from ..train.evaluation import format_samples, sample_records
from .common import (add_inference_parser, describe_ckpt, inference_precision, load_for_inference,
                     setup_runtime)


def add_parser(sub, parents):
    return add_inference_parser(sub, parents, "sample")


def run(args):
    setup_runtime(args)
    ckpt, model, data, source = load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.seed is not None:
        ids = np.sort(np.random.default_rng(args.seed).choice(ids, size=min(args.n, len(ids)),
                                                              replace=False))
    ids = ids[: args.n]
    with use_precision(inference_precision(args, ckpt)):
        samples = sample_records(model, data, args.split, ids, args.beam_size, args.max_length)
    if args.json:
        print(json.dumps(samples, indent=2))
        return 0
    decoding = "greedy" if args.beam_size == 1 else f"beam search, beam {args.beam_size}"
    print(f"checkpoint {describe_ckpt(ckpt)}")
    print(f"{args.split} images of {source}; {decoding}\n")
    print(format_samples(samples), end="")
    return 0


def prints_its_product(args):
    return True  # what it prints is its work (fastcap.cli.streams)
