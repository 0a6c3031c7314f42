"""The commands that run a checkpoint compute in the precision it was trained in, unless
--precision or FASTCAP_PRECISION says otherwise."""
import pytest

from fastcap.cli import evaluate, sample, show
from fastcap.cli.main import main
from fastcap.runtime import precision

from test_cli import TINY

# float32 (the bfloat16 mode leaves float64 models alone); the NumPy reference emulates bf16
# on any CPU, so the run records bfloat16 everywhere.
FLOAT32_TINY = [("float32" if a == "float64" else a) for a in TINY]


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "run"
    assert main(["train", *FLOAT32_TINY, "--epochs", "1", "--precision", "bfloat16",
                 "--out", str(out)]) == 0
    return out / "checkpoint.npz"


def spy(monkeypatch, module, name):
    """Record the precision in force each time ``module.name`` is called."""
    seen, real = [], getattr(module, name)

    def record(*args, **kwargs):
        seen.append(precision.get_precision())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, record)
    return seen


COMMANDS = {"sample": (sample, "sample_records", ["-n", "2"]),
            "evaluate": (evaluate, "evaluate_captions", ["--max-images", "2"]),
            "show": (show, "contact_sheet", ["-n", "1"])}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("given, env, want", [
    ((), None, "bfloat16"),  # the checkpoint's
    (("--precision", "float32"), None, "float32"),  # told otherwise on the command line
    ((), "float32", "float32"),  # or by the environment
], ids=["checkpoint", "option", "environment"])
def test_the_checkpoints_precision_unless_told_otherwise(bf16_run, tmp_path, monkeypatch, command,
                                                          given, env, want):
    if env is None:
        monkeypatch.delenv("FASTCAP_PRECISION", raising=False)
    else:  # as when fastcap was imported with it set
        monkeypatch.setenv("FASTCAP_PRECISION", env)
        monkeypatch.setattr(precision, "_active", env)
    module, function, extra = COMMANDS[command]
    seen = spy(monkeypatch, module, function)
    out = ["--out", str(tmp_path / "sheet.png")] if command == "show" else []
    before = precision.get_precision()
    assert main([command, str(bf16_run), *extra, *out, *given]) == 0
    assert seen == [want]
    assert precision.get_precision() == before  # for the command's work only
