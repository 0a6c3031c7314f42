"""``fastcap prepare``: a captions file and an image folder -> a data directory ``--data`` reads."""
import argparse

from ..coco_utils import LAYOUT
from ..data.prepare import prepare
from ..train.options import PREPARE_OPTIONS, add_options
from .common import add_runtime_options, setup_runtime


def add_parser(sub, parents):
    p = sub.add_parser("prepare", parents=parents, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="a captions file and an image folder -> a data directory",
                       description="Turn a captions file (COCO captions_*.json, Karpathy's "
                                   "dataset_*.json or a\nFlickr8k token file with --train-list/"
                                   "--val-list) and its images into a\ndata directory for "
                                   "`fastcap train --data`: tokenized captions, a vocabulary,\n"
                                   "CNN features and their PCA (needs the [vision] extra). An "
                                   "interrupted run\ncontinues where it stopped when run again. "
                                   "--threads also sets the CNN's threads\n(default: every "
                                   "core).",
                       epilog=f"DATA_DIR gets the CS231n layout:\n{LAYOUT}\nand "
                              "fastcap_features.json, fastcap_pca.h5 (how the features were "
                              "made).")
    add_options(p, PREPARE_OPTIONS)
    add_runtime_options(p)
    return p


def run(args):
    if (args.train_list is None) != (args.val_list is None):
        raise ValueError("--train-list and --val-list go together (a Flickr8k split)")
    lists = {"train": args.train_list, "val": args.val_list} if args.train_list else None
    setup_runtime(args)
    s = prepare(args.captions_file, args.images, args.out, split_lists=lists,
                extractor=args.extractor, weights=args.weights, min_count=args.min_count,
                val_fraction=args.val_fraction, seed=args.seed, pca_dim=args.pca_dim,
                overwrite=args.overwrite, progress=not args.quiet, threads=args.threads,
                grid=args.grid, grid_pca_dim=args.grid_pca_dim)
    split = "from the file" if s["split_from_file"] else f"random, seed {args.seed}"
    print(f"wrote {s['out']}: {s['format']} captions, split {split}")
    for name in ("train", "val"):
        print(f"  {name:5s} {s['images'][name]:>7,d} images {s['captions'][name]:>8,d} captions")
    print(f"  vocabulary {s['vocab']:,d} words (seen >= {args.min_count} times in train); "
          f"{s['truncated']:,d} captions truncated to 15 words")
    print(f"  features {args.extractor} ({args.weights} weights) {s['feature_dim']}-d, "
          f"PCA {s['pca_dim']}-d")
    if s["grid"]:
        g = s["grid"]
        print(f"  grid features {g['layer']} {g['shape'][0]}x{g['shape'][1]} cells x "
              f"{g['channels']} channels" + (f", PCA {g['dim']} channels" if g["pca_dim"] else "")
              + " (float16)")
    for why, n in sorted(s["dropped"].items()):
        print(f"  left out: {n:,d} {why}")
    print(f"train on it: fastcap train --data {s['out']}" + (" [--attention]" if s["grid"] else ""))
    return 0
