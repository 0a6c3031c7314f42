"""Does self-critical training raise CIDEr on real captions? (issue: +5% relative in 2 epochs, BLEU-4 within 0.01)

The two-stage recipe on the Flickr8k captions in the CS231n layout that
bf16_quality.py builds (its features: each image's bag of words, projected,
plus noise): a cross-entropy run (bf16_quality.py's float32 run: LSTM 512,
wordvec 256, 8 epochs, lr 5e-3 decaying 0.9, validation on the 1,000 dev
images), then ``--scst`` from its best.npz for 2 epochs, validated on the same
images. Prints the curve (per-epoch validation CIDEr and BLEU-4 of both
stages) and whether the target is met.

    python benchmarks/scst_quality.py [--out DIR] [--ce-run DIR] [--lr 2e-4] ...

--ce-run reuses a finished cross-entropy run (its best.npz and its data).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bf16_quality import write_flickr8k  # noqa: E402
from workload import find_flickr8k  # noqa: E402


def _train(args):
    cmd = [sys.executable, "-m", "fastcap", "train", *map(str, args), "--quiet", "--overwrite"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def _history(run):
    with open(os.path.join(run, "history.json")) as f:
        return json.load(f)["epochs"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="where the data and the runs go (default: a temporary directory)")
    p.add_argument("--ce-run", help="a finished cross-entropy run to start from (its config names the data)")
    p.add_argument("--ce-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="self-critical epochs (default 2)")
    p.add_argument("--lr", type=float, default=2e-4, help="self-critical learning rate (default 2e-4)")
    p.add_argument("--batch-size", type=int, default=50, help="images per self-critical step (default 50)")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--baseline", default="mean")
    p.add_argument("--eval-images", type=int, default=1000)
    args = p.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="fastcap-scst-quality-")
    ce = args.ce_run
    if ce is None:
        corpus = find_flickr8k()
        if corpus is None:
            sys.exit("scst_quality: no Flickr8k corpus found (set FASTCAP_FLICKR8K_DIR)")
        data = os.path.join(out, "data")
        os.makedirs(data, exist_ok=True)
        write_flickr8k(corpus, data)
        ce = os.path.join(out, "ce")
        _train(["--data", data, "--cell", "lstm", "--hidden-dim", 512, "--wordvec-dim", 256,
                "--epochs", args.ce_epochs, "--lr", 5e-3, "--lr-decay", 0.9,
                "--eval-images", args.eval_images, "--out", ce])
    scst = os.path.join(out, "scst")
    _train(["--scst", "--init-from", os.path.join(ce, "best.npz"), "--epochs", args.epochs,
            "--lr", args.lr, "--lr-decay", 1.0, "--batch-size", args.batch_size,
            "--scst-samples", args.samples, "--scst-baseline", args.baseline,
            "--eval-images", args.eval_images, "--out", scst])
    rows = [("cross-entropy", e) for e in _history(ce)[1:]] + [("scst", e) for e in _history(scst)[1:]]
    print("| stage | epoch | val CIDEr | val BLEU-4 | val loss | train loss | epoch s |\n|---|---:|---:|---:|---:|---:|---:|")
    for stage, e in rows:
        print(f"| {stage} | {e['epoch']} | {e['cider']:.4f} | {e['bleu4']:.4f} | {e['val_loss']:.3f} | "
              f"{e['train_loss']:.3f} | {e.get('epoch_seconds', float('nan')):.0f} |")
    start, end = _history(scst)[0], _history(scst)[-1]
    gain, drop = end["cider"] / start["cider"] - 1, start["bleu4"] - end["bleu4"]
    print(f"from the best cross-entropy epoch: CIDEr {start['cider']:.4f} -> {end['cider']:.4f} "
          f"({gain:+.1%}; target >= +5%), BLEU-4 {start['bleu4']:.4f} -> {end['bleu4']:.4f} "
          f"({-drop:+.4f}; target >= -0.01): {'met' if gain >= 0.05 and drop <= 0.01 else 'NOT met'}")


if __name__ == "__main__":
    main()
