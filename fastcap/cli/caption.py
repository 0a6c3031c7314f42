"""``fastcap caption``: captions of new images (files, folders, URLs) by a checkpoint."""
import json

from ..inference.caption import caption_files
from ..train.options import CAPTION_OPTIONS, add_options
from .common import add_runtime_options, asked_precision, setup_runtime


def add_parser(sub, parents):
    p = sub.add_parser("caption", parents=parents, help="caption new images with a checkpoint",
                       description="Print a caption for each image (files, folders, http(s) "
                                   "URLs): IMAGE<TAB>caption, or JSON. The features are made "
                                   "as the checkpoint's data was (fastcap prepare recorded the "
                                   "CNN, its preprocessing and the PCA); needs the [vision] "
                                   "extra. --threads also sets the CNN's threads (default: "
                                   "every core).")
    add_options(p, CAPTION_OPTIONS)
    add_runtime_options(p)
    return p


def run(args):
    setup_runtime(args)
    ckpt, results = caption_files(args.checkpoint, args.images, data_dir=args.data,
                                  extractor=args.extractor, weights=args.weights,
                                  beam_size=args.beam_size, max_length=args.max_length,
                                  suppress=("<UNK>",) if args.no_unk else (),
                                  threads=args.threads, precision=asked_precision(args))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            print(f"{r['image']}\t{r['caption']}")
    return 0


def prints_its_product(args):
    return True  # what it prints is its work (fastcap.cli.streams)
