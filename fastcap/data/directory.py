"""A data directory written whole or refused: one writer at a time, between a manifest saying
"incomplete" and one saying "complete".

``fastcap make-data`` and ``fastcap prepare`` write their directories inside ``writing``:
it takes the directory's lock (fastcap.runtime.files.DirectoryLock), refuses to replace data
files the command did not write itself (unless overwrite), removes what a killed writer left
(its temporary files), writes the manifest (coco_utils.MANIFEST) with ``"complete": false``,
lets the command write its files (each atomically), then writes the manifest again with
``"complete": true``. ``load_coco_data`` refuses a directory whose manifest is not complete, so
a writer killed at any point leaves the old data, the new, or a directory that is refused; and
the same command run again on a directory it left unfinished continues it, without --overwrite.
"""
import contextlib
import json
import os

from ..coco_utils import MANIFEST, read_manifest
from ..runtime.files import DirectoryLock, atomic_write_text, check_special, temporaries

__all__ = ["writing", "check_outputs", "unfinished_by"]


def unfinished_by(out, command):
    """Whether ``out`` was left half-written by ``fastcap <command>`` (its files are that
    command's own, to finish)."""
    manifest = read_manifest(out)
    return manifest is not None and not manifest["complete"] and \
        manifest.get("format") == f"fastcap {command}"


def check_outputs(out, names, command, overwrite=False):
    """FileExistsError when ``out`` holds any of ``names`` that ``command`` did not leave
    unfinished there, unless ``overwrite``; what is not a regular file is refused. Commands
    call it first, to refuse before their work; ``writing`` checks again under the lock."""
    out = os.fspath(out)
    for name in (*names, MANIFEST):
        check_special(os.path.join(out, name), f"{command} {out}: {name}")
    existing = [n for n in names if os.path.lexists(os.path.join(out, n))]
    if existing and not overwrite and not unfinished_by(out, command):
        raise FileExistsError(f"{out} already holds {', '.join(existing)}, which {command} "
                              "would replace; pass --overwrite to replace them, or choose "
                              "another directory")


@contextlib.contextmanager
def writing(out, names, command, overwrite=False, **facts):
    """Write the files ``names`` of the directory ``out`` (see the module docstring); ``facts``
    go into the manifest. check_outputs' refusal, under the lock, before anything is written."""
    out = os.fspath(out)
    check_outputs(out, names, command, overwrite)
    os.makedirs(out, exist_ok=True)
    with DirectoryLock(out):
        check_outputs(out, names, command, overwrite)
        for tmp in temporaries(out, (*names, MANIFEST)):  # a killed writer's
            os.unlink(tmp)
        manifest = {"format": f"fastcap {command}", "complete": False, **facts}
        atomic_write_text(os.path.join(out, MANIFEST), json.dumps(manifest))
        yield
        atomic_write_text(os.path.join(out, MANIFEST), json.dumps({**manifest, "complete": True}))
