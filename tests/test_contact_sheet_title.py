"""The contact sheet's title: wrapped to the sheet, never clipped, never over the tiles."""
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from fastcap.inference.contact_sheet import contact_sheet

from test_show import run  # noqa: F401  (the tiny trained run)

LONG_PATH = "/home/someone/experiments/2026-12-04/" + "a-very-long-run-directory-name/" * 3


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 5), columns=st.integers(1, 4),
       words=st.lists(st.sampled_from(["checkpoint", LONG_PATH, "LSTM (wordvec 16)", "epoch 5,",
                                       "val", "images", "of", "greedy"]), min_size=1, max_size=12),
       lines=st.integers(1, 3))
def test_title_fits_above_the_tiles(run, n, columns, words, lines):  # noqa: F811
    _, model, data = run
    title = "\n".join(" ".join(words) for _ in range(lines))
    fig = contact_sheet(model, data, "val", n=n, columns=columns, title=title)
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    width, height = fig.bbox.width, fig.bbox.height
    assert 0 <= box.x0 and box.x1 <= width and box.y1 <= height, (box, width, height)
    headings = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.axison]
    assert box.y0 >= max(h.y1 for h in headings)
    # every character of the title is on the sheet (wrapping only breaks lines)
    assert "".join(fig._suptitle.get_text().split()) == "".join(title.split())
