"""``fastcap show``: a contact sheet (an image file) and/or an HTML page of images of a split with
their captions."""
import warnings

from ..image_utils import ImageUnavailableError, ImageUnavailableWarning
from ..inference.contact_sheet import check_out_path, contact_sheet, save_png, sheet_entries
from ..inference.html_page import Item, check_page_path, render, thumbnail, write_page
from ..runtime.precision import use_precision
from .common import (add_inference_parser, describe_ckpt, inference_precision, inputs,
                     load_for_inference, setup_runtime)


def add_parser(sub, parents):
    return add_inference_parser(sub, parents, "show")


def _page_items(split, entries, beam_size):
    """The page's cards: each image with its references and the model's captions."""
    image_ids, urls, images, refs, greedy, beam = entries
    items = []
    for k, (img_id, url, image) in enumerate(zip(image_ids.tolist(), urls, images)):
        lines = [("greedy", greedy[k], "generated")]
        if beam is not None:
            lines.append((f"beam {beam_size}", beam[k], "beam"))
        lines += [("GT", r, "reference") for r in refs[k]]
        missing = isinstance(image, ImageUnavailableError)
        items.append(Item(f"{split} image {img_id}: {url}", None if missing else thumbnail(image),
                          f"image unavailable: {image.reason}" if missing else None, lines))
    return items


def run(args):
    setup_runtime(args)
    sheet = args.out is not None or args.html is None  # --html alone writes the page alone
    out = check_out_path(args.out or f"contact_sheet_{args.split}.png", args.overwrite,
                         inputs(args)) if sheet else None
    if args.html is not None:
        check_page_path(args.html, args.overwrite, inputs(args))
    ckpt, model, data, source = load_for_inference(args)
    decoding = "greedy" + (f" and beam search (beam {args.beam_size})" if args.beam_size else "")
    title = f"{describe_ckpt(ckpt)}\n{args.split} images of {source}; {decoding}"
    with warnings.catch_warnings(record=True) as caught, \
            use_precision(inference_precision(args, ckpt)):
        warnings.simplefilter("always", ImageUnavailableWarning)
        entries = sheet_entries(model, data, args.split, n=args.n, beam_size=args.beam_size,
                                max_length=args.max_length)
        fig = contact_sheet(model, data, args.split, beam_size=args.beam_size, title=title,
                            entries=entries) if sheet else None
    for w in caught:  # the placeholders, one line each; other warnings as Python shows them
        if issubclass(w.category, ImageUnavailableWarning):
            print(w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if sheet:
        print(f"wrote {save_png(fig, out, args.overwrite, inputs(args, ckpt))}")
    if args.html is not None:
        page = render(f"{args.split} images by {ckpt.path}", title.splitlines(),
                      _page_items(args.split, entries, args.beam_size))
        print(f"wrote {write_page(args.html, page, args.overwrite, inputs(args, ckpt))}")
    return 0
