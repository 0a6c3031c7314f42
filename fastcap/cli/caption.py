"""``fastcap caption``: captions of new images (files, folders, URLs) by a checkpoint: a thin layer
over fastcap.inference.captioner (``load_captioner``, ``Captioner``)."""
import json
import os
import sys

from ..inference.caption import caption_files, expand_images, looks_like_image
from ..inference.attention_map import map_paths, save_attention_map
from ..inference.captioner import load_captioner
from ..inference.html_page import Item, check_page_path, render, thumbnail, write_page
from ..train.checkpoint import CheckpointError
from ..train.options import CAPTION_OPTIONS, add_options
from .common import (EXIT_SKIPPED, PROG, add_runtime_options, asked_precision, checkpoint_file,
                     checkpoint_inputs, setup_runtime)

USAGE = "fastcap caption CHECKPOINT IMAGE... (the checkpoint, a .npz file or a run folder, first)"


def add_parser(sub, parents):
    p = sub.add_parser("caption", parents=parents, help="caption new images with a checkpoint",
                       description="Print a caption for each image (files, folders, http(s) "
                                   "URLs): IMAGE<TAB>caption, or JSON; --html FILE also writes "
                                   "a page of the pictures with their captions. The features "
                                   "are made as the checkpoint's data was (the CNN, its "
                                   "preprocessing and the PCA the checkpoint carries); needs "
                                   "the [vision] extra. A file of a folder that is not a "
                                   "picture is skipped with a warning, and the exit status is "
                                   f"then {EXIT_SKIPPED}. --threads also sets the CNN's threads "
                                   "(default: every core).")
    add_options(p, CAPTION_OPTIONS)
    add_runtime_options(p)
    return p


def check_args(args):
    """What argparse cannot say of the arguments (a usage error), or None."""
    if looks_like_image(args.checkpoint) and not os.path.isdir(args.checkpoint):
        return f"CHECKPOINT {args.checkpoint} is a picture, not a checkpoint: {USAGE}"
    if not args.images:
        return f"no IMAGE given: {USAGE}"
    return None


def run(args):
    setup_runtime(args)
    sources = expand_images(args.images)
    inputs = [*checkpoint_inputs(args.checkpoint), *sources]
    if args.html is not None:  # before the work it would be lost after
        check_page_path(args.html, args.overwrite, inputs)
    path = checkpoint_file(args.checkpoint)
    captioner = load_captioner(path, data_dir=args.data, extractor=args.extractor,
                               weights=args.weights, precision=asked_precision(args),
                               threads=args.threads)
    if captioner.features is None:
        raise CheckpointError(captioner.unavailable)
    maps = _map_paths(args, captioner, path, sources, inputs)
    items = []

    def keep(result, array):  # only the page's small JPEG of each picture is kept
        if args.html is not None:
            items.append(Item(result["image"], thumbnail(array),
                              lines=[("", result["caption"], "generated")]))
        if maps is not None:
            _draw_map(args, captioner, maps[result["image"]], result["image"], array, inputs)

    results, skipped = caption_files(captioner, sources, beam_size=args.beam_size,
                                     max_length=args.max_length, no_unk=args.no_unk,
                                     on_image=keep if args.html or maps else None)
    if not results:
        raise ValueError(f"none of the {len(sources)} pictures could be read (each is named "
                         "above)")
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            print(f"{r['image']}\t{r['caption']}")
    if args.html is not None:
        decoding = "greedy" if args.beam_size == 1 else f"beam search, beam {args.beam_size}"
        items += [Item(src, missing=f"skipped: {why}") for src, why in skipped]
        text = render(f"Captions by {path}", [captioner.describe(), f"{decoding} decoding"], items)
        print(f"{PROG}: wrote {write_page(args.html, text, args.overwrite, inputs)}",
              file=sys.stderr)
    if maps is not None:
        drawn = len(results)
        print(f"{PROG}: wrote {drawn} attention map{'' if drawn == 1 else 's'} to "
              f"{args.attention_map}", file=sys.stderr)
    if skipped:
        print(f"{PROG}: {len(skipped)} of {len(sources)} pictures skipped (not readable); exit "
              f"status {EXIT_SKIPPED}", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def _map_paths(args, captioner, path, sources, inputs):
    """{source: the PNG of its attention map} with --attention-map (each checked before any
    work), else None; a checkpoint of a pooled-feature model has no maps to draw."""
    if args.attention_map is None:
        return None
    if not captioner.model.GRID:
        raise ValueError(f"--attention-map draws an attention model's maps, but {path} holds "
                         f"{captioner.describe()}: train one with fastcap train --attention")
    return dict(zip(map(str, sources), map_paths(args.attention_map, sources, args.overwrite,
                                                 inputs)))


def _draw_map(args, captioner, out, source, array, inputs):
    """The attention map of one picture (its greedy caption: with --beam-size the printed
    caption may differ, and the title says which the panels show)."""
    (words, weights), = captioner.attend([array], max_length=args.max_length,
                                         no_unk=args.no_unk, sources=[source])
    title = f"{source}\n{' '.join(words)} (greedy)"
    save_attention_map(out, captioner.features.view(array), words, weights,
                       captioner.features.grid_shape, title, overwrite=args.overwrite,
                       inputs=inputs)


def prints_its_product(args):
    return True  # what it prints is its work (fastcap.cli.streams)
