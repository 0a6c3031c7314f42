"""``fastcap show``: a contact sheet (an image file) and/or an HTML page of images of a split with
their captions."""
import warnings

from ..image_utils import ImageUnavailableError, ImageUnavailableWarning
from ..data.features import EXTRACTORS, network_view
from ..data.load import grid_shape_of
from ..inference.attention_map import attended_words, map_paths, save_attention_map
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


def _draw_maps(args, ckpt, model, data, entries):
    """The attention map of each image of the sheet (greedy decoding), over the part of the
    picture its grid covers: the network's centre crop for prepared data, the whole generated
    picture; an image that could not be fetched has none."""
    image_ids, urls, images = entries[:3]
    keep = [k for k, im in enumerate(images) if not isinstance(im, ImageUnavailableError)]
    if not keep:
        return []
    paths = map_paths(args.attention_map, [urls[k] for k in keep], args.overwrite,
                      inputs(args, ckpt))
    features = data[f"{args.split}_features"][image_ids[keep]]
    captions, alpha = model.sample(features, args.max_length, return_attention=True)
    record = ckpt.config["data"].get("features")
    spec = EXTRACTORS[record["extractor"]] if record is not None else None
    for path, k, (words, weights) in zip(paths, keep, attended_words(model, captions, alpha)):
        picture = network_view(images[k], spec) if spec is not None else images[k]
        save_attention_map(path, picture, words, weights, grid_shape_of(data, args.split),
                           f"{args.split} image {image_ids[k]}: {urls[k]}\n{' '.join(words)}",
                           overwrite=args.overwrite, inputs=inputs(args, ckpt))
    return paths


def run(args):
    setup_runtime(args)
    sheet = args.out is not None or args.html is None  # --html alone writes the page alone
    out = check_out_path(args.out or f"contact_sheet_{args.split}.png", args.overwrite,
                         inputs(args)) if sheet else None
    if args.html is not None:
        check_page_path(args.html, args.overwrite, inputs(args))
    ckpt, model, data, source = load_for_inference(args)
    if args.attention_map is not None and not model.GRID:
        raise ValueError(f"--attention-map draws an attention model's maps, but {ckpt.path} "
                         f"holds {ckpt.model.describe()}: train one with fastcap train --attention")
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
    if args.attention_map is not None:
        with use_precision(inference_precision(args, ckpt)):
            paths = _draw_maps(args, ckpt, model, data, entries)
        print(f"wrote {len(paths)} attention maps to {args.attention_map}")
    if args.html is not None:
        page = render(f"{args.split} images by {ckpt.path}", title.splitlines(),
                      _page_items(args.split, entries, args.beam_size))
        print(f"wrote {write_page(args.html, page, args.overwrite, inputs(args, ckpt))}")
    return 0
