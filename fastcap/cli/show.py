"""``fastcap show``: a contact sheet (an image file) of images of a split with their captions."""
import warnings

from ..image_utils import ImageUnavailableWarning
from ..inference.contact_sheet import check_out_path, contact_sheet, save_png
from ..runtime.precision import use_precision
from .common import (add_inference_parser, describe_ckpt, inference_precision, inputs,
                     load_for_inference, setup_runtime)


def add_parser(sub, parents):
    return add_inference_parser(sub, parents, "show")


def run(args):
    setup_runtime(args)
    out = check_out_path(args.out or f"contact_sheet_{args.split}.png", args.overwrite,
                         inputs(args))
    ckpt, model, data, source = load_for_inference(args)
    decoding = "greedy" + (f" and beam search (beam {args.beam_size})" if args.beam_size else "")
    with warnings.catch_warnings(record=True) as caught, \
            use_precision(inference_precision(args, ckpt)):
        warnings.simplefilter("always", ImageUnavailableWarning)
        fig = contact_sheet(model, data, args.split, n=args.n, beam_size=args.beam_size,
                            max_length=args.max_length,
                            title=f"{describe_ckpt(ckpt)}\n{args.split} images of {source}; {decoding}")
    for w in caught:  # the placeholders, one line each; other warnings as Python shows them
        if issubclass(w.category, ImageUnavailableWarning):
            print(w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(f"wrote {save_png(fig, out, args.overwrite, inputs(args, ckpt))}")
    return 0
