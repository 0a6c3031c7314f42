"""Progress output fit for logs: a line now and then, never a bar's redraws, when the
stream is not a terminal."""
import io

from fastcap.runtime import progress

from conftest import fastcap_cmd
from test_cli import TINY, ok


def test_a_log_gets_whole_lines_at_most_every_interval(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = progress.bar(100, desc="train", file=out)
    assert isinstance(bar, progress.LogProgress)
    for i in range(100):
        clock[0] += 1.0  # one update a second: a line every LOG_EVERY seconds
        bar.set_postfix_str(f"loss {i}")
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 100 // int(progress.LOG_EVERY) + 1
    assert lines[-1] == "train: 100/100 it, loss 99"
    silent = io.StringIO()
    b = progress.bar(5, file=silent, disable=True)
    b.update(5)
    b.close()
    assert silent.getvalue() == ""


def test_train_into_a_log_writes_no_bar(tmp_path):
    proc = ok(fastcap_cmd("train", *[a for a in TINY if a != "--quiet"], "--out", tmp_path / "run"))
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    assert proc.stderr.count("train: ") <= 2  # the final line (a tiny run takes under LOG_EVERY)
    assert "train: 12/12 it" in proc.stderr
