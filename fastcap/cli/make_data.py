"""``fastcap make-data``: the generated dataset written in the CS231n layout."""
import argparse
import os

from ..coco_utils import LAYOUT
from ..data.generated import GRID_DEFAULTS
from ..data.make import write_coco_data
from ..train.options import MAKE_DATA_OPTIONS, add_options


def add_parser(sub, parents):
    p = sub.add_parser("make-data", parents=parents, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="write generated data in the CS231n coco_captioning layout",
                       description="Write a deterministic generated captioning dataset in the "
                                   "CS231n layout (usable with --data).",
                       epilog=LAYOUT)
    add_options(p, MAKE_DATA_OPTIONS)
    return p


def run(args):
    if not args.grid and (args.grid_size is not None or args.grid_dim is not None):
        raise ValueError("--grid-size and --grid-dim shape the grid features: they go with --grid")
    grid = {"grid_size": args.grid_size or GRID_DEFAULTS["grid_size"],
            "grid_dim": args.grid_dim or GRID_DEFAULTS["grid_dim"]} if args.grid else {}
    out = write_coco_data(args.out_dir, overwrite=args.overwrite,
                          num_train_images=args.num_train, num_val_images=args.num_val,
                          captions_per_image=args.captions_per_image, pca_dim=args.pca_dim,
                          full_dim=args.full_dim, seed=args.seed, **grid)
    n_tr, n_va = args.num_train * args.captions_per_image, args.num_val * args.captions_per_image
    print(f"wrote generated data to {out}: {args.num_train} train images ({n_tr} captions), "
          f"{args.num_val} val images ({n_va} captions), features {args.pca_dim}-d (PCA) and "
          f"{args.full_dim}-d (fc7)" + (", grids {0}x{0}x{1}".format(*grid.values()) if grid
                                        else "") + f", seed {args.seed}")
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if os.path.isfile(path) and not name.startswith("."):
            print(f"  {name:28s} {os.path.getsize(path):>12,d} bytes")
    return 0
