"""Data-parallel training over MPI: K ranks train what one process trains with the global batch.

The MPI tests run ``mpiexec -n K`` in a subprocess (the MPICH wheel's
``mpiexec``, next to this Python). They are skipped, with the reason, where
mpi4py or mpiexec is missing; CI installs the ``[mpi]`` extra, so there they run.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcap.train import distributed
from fastcap.train.checkpoint import load_checkpoint
from fastcap.model.sequence import CELL_TYPES

from conftest import REQUIRE_ALL

try:
    import mpi4py  # noqa: F401

    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN + os.pathsep + os.environ.get("PATH", ""))
if REQUIRE_ALL and not (HAVE_MPI4PY and MPIEXEC):
    raise RuntimeError("CI must run the MPI tests: install the [mpi] extra (mpi4py and mpich)")
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason=f"needs mpi4py and mpiexec: {distributed.MPI_INSTALL_HINT}")

# A small float64 run whose global batch (7) does not divide by 2 or 3 ranks.
SMALL = ["--num-train-images", "40", "--num-val-images", "10", "--captions-per-image", "2",
         "--hidden-dim", "16", "--wordvec-dim", "8", "--dtype", "float64", "--batch-size", "7",
         "--epochs", "2", "--eval-images", "7", "--num-samples", "2", "--lr", "1e-2", "--quiet"]
TIMEOUT = 120  # a hang fails the test instead of blocking the suite


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", distributed.FAULT_ENV))}
    # Hydra launches local ranks with fork, so it needs no ssh and no name service;
    # ranks may outnumber cores (3 on a 2-core machine); no core binding.
    env.update({"PATH": BIN + os.pathsep + env.get("PATH", ""), "HYDRA_LAUNCHER": "fork"},
               **extra)
    return env


def _cmd(ranks, *args):
    cmd = [sys.executable, "-m", "fastcap", *args]
    return cmd if ranks is None else [MPIEXEC, "-n", str(ranks), *cmd]


def train(ranks, out, *args, env=None):
    """``fastcap train`` (under ``mpiexec -n ranks``, or alone for None) -> CompletedProcess."""
    return subprocess.run(_cmd(ranks, "train", *SMALL, "--out", str(out), *args),
                          capture_output=True, text=True, timeout=TIMEOUT, env=env or _env())


def run_state(out):
    """(loss history, parameters, per-epoch records) of a run directory's checkpoint."""
    with open(os.path.join(out, "history.json")) as f:
        history = json.load(f)
    ckpt = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert np.array_equal(ckpt.loss_history, history["loss_history"])
    return np.array(history["loss_history"]), ckpt.params, history["epochs"]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def assert_same_run(a, b, tol=1e-9):
    (la, pa, ea), (lb, pb, eb) = run_state(a), run_state(b)
    assert la.shape == lb.shape and la.size > 0
    assert rel(la, lb) < tol, (la, lb)
    assert set(pa) == set(pb)
    for k in pa:
        assert rel(pa[k], pb[k]) < tol, k
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        assert rel(x["val_loss"], y["val_loss"]) < tol
        for m in ("bleu1", "bleu4", "cider"):  # the same captions: the same scores
            assert x[m] == pytest.approx(y[m], rel=1e-12, abs=1e-12), m


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# ---------------------------------------------------------------- without MPI
def test_share_partitions_every_batch_in_rank_order():
    for size in (1, 2, 3, 5):
        for n in (0, 1, 2, 7, 100, 101):
            parts = [distributed.share(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(parts[r][1] == parts[r + 1][0] for r in range(size - 1))
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1


def test_mpiexec_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match=r'2 processes.*pip install "fastcap-rnn\[mpi\]" '
                                          r'\(from a checkout: pip install "\.\[mpi\]"\)'):
        distributed.world()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert distributed.world() is None  # mpiexec -n 1: one process, as without mpiexec
    monkeypatch.delenv("PMI_SIZE")
    assert distributed.world() is None  # not under mpiexec


def test_info_says_what_to_install_for_mpi(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert distributed.describe_mpi() == (
        'MPI: unavailable (mpiexec -n K fastcap train needs pip install "fastcap-rnn[mpi]" '
        '(from a checkout: pip install ".[mpi]"): mpi4py and the MPICH runtime)')


@needs_mpi
def test_info_names_the_mpi_library():
    out = subprocess.run(_cmd(None, "info"), capture_output=True, text=True, timeout=TIMEOUT,
                         env=_env()).stdout
    assert f"MPI: mpi4py {mpi4py.__version__}, " in out, out


@needs_mpi
def test_solver_rejects_a_comm_that_is_not_a_communicator():
    from fastcap import CaptioningRNN, CaptioningSolver
    from fastcap.data.generated import generate_coco_data

    data = generate_coco_data(num_train_images=4, num_val_images=2, captions_per_image=1, seed=0)
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=4, hidden_dim=4)
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        CaptioningSolver(model, data, comm="world")


# ---------------------------------------------------------------- 2 ranks = 1 rank
@needs_mpi
@pytest.mark.parametrize("model", [[], ["--attention", "--attention-dim", "6"]], ids=["pooled", "attention"])
@pytest.mark.parametrize("cell", CELL_TYPES)
def test_two_ranks_train_what_one_rank_trains_with_the_global_batch(tmp_path, cell, model):
    ok(train(None, tmp_path / "one", "--cell", cell, *model))
    two = ok(train(2, tmp_path / "two", "--cell", cell, *model))
    # Each rank gets this host's cores over its 2 ranks as threads.
    threads = max(1, min((os.cpu_count() or 1) // 2, len(os.sched_getaffinity(0))))
    assert (f"data-parallel over 2 MPI ranks: global batch 7 = 4 or 3 captions per rank, "
            f"{threads} thread") in two.stdout, two.stdout
    # Rank 0 alone prints: each epoch line once.
    assert two.stdout.count("epoch 2/2:") == 1, two.stdout
    assert_same_run(tmp_path / "one", tmp_path / "two")
    kind = load_checkpoint(os.path.join(tmp_path / "two", "checkpoint.npz")).model_config.get("kind")
    assert (kind == "attention") == bool(model), kind


@needs_mpi
def test_python_api_broadcasts_rank_0_state_so_ranks_agree(tmp_path):
    """CaptioningSolver(comm=...) with ranks seeded differently still trains rank 0's model."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        from fastcap import CaptioningRNN, CaptioningSolver
        from fastcap.data import generate_coco_data

        comm = None
        if sys.argv[1] == "mpi":
            from mpi4py import MPI

            COLLECTIVES = {"Allreduce", "allreduce", "Reduce", "reduce", "Bcast", "bcast",
                           "Allgather", "allgather", "Gather", "gather", "Barrier", "barrier",
                           "Send", "send", "Recv", "recv", "Sendrecv", "sendrecv"}

            class Counting(MPI.Intracomm):  # COMM_WORLD, counting its communication calls
                calls = {}

                def __getattribute__(self, name):
                    if name in COLLECTIVES:
                        Counting.calls[name] = Counting.calls.get(name, 0) + 1
                    return super().__getattribute__(name)

            comm = Counting(MPI.COMM_WORLD)
        rank = 0 if comm is None else comm.Get_rank()
        data = generate_coco_data(num_train_images=30, num_val_images=2, captions_per_image=2, seed=1)
        np.random.seed(100 + rank)  # the model and the minibatches differ per rank before the broadcast
        model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                              wordvec_dim=8, hidden_dim=12, cell_type="lstm", dtype=np.float64)
        solver = CaptioningSolver(model, data, update_rule="sgd_momentum", batch_size=9,
                                  num_epochs=2, optim_config={"learning_rate": 0.05},
                                  verbose=False, comm=comm)
        solver.train()
        if rank == 0:
            np.savez(sys.argv[2], loss=np.array(solver.loss_history), **model.params)
        if comm is not None:
            # One Allreduce per step of one buffer; rank 0's state broadcast once.
            assert Counting.calls == {"Allreduce": 12, "Bcast": 1, "bcast": 1}, Counting.calls
            n = sum(v.size for v in model.params.values())
            assert solver.data_parallel.nbytes == (n + 3) * 8
            flat = np.concatenate([v.ravel() for v in model.params.values()])
            everyone = comm.allgather(flat)
            assert all(np.array_equal(everyone[0], f) for f in everyone), "ranks drifted apart"
    """))
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    ok(run(sys.executable, str(script), "one", str(tmp_path / "one.npz")))
    ok(run(MPIEXEC, "-n", "2", sys.executable, str(script), "mpi", str(tmp_path / "two.npz")))
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a["loss"].size == 12  # 60 captions // 9, 2 epochs
        for k in a.files:
            assert rel(a[k], b[k]) < 1e-9, k


# ---------------------------------------------------------------- resume
@needs_mpi
def test_resume_under_mpi_with_another_k_equals_an_uninterrupted_run(tmp_path):
    ok(train(None, tmp_path / "whole"))
    cut = train(2, tmp_path / "cut", "--stop-after-iterations", "5")  # mid-epoch 1
    assert cut.returncode == 130, cut.stdout + cut.stderr
    assert "interrupted after iteration 5 of 22" in cut.stderr
    assert cut.stderr.count("interrupted after") == 1  # rank 0 alone reports it
    ok(subprocess.run(_cmd(3, "train", "--resume", str(tmp_path / "cut"), "--quiet"),
                      capture_output=True, text=True, timeout=TIMEOUT, env=_env()))
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


# ---------------------------------------------------------------- faults
@needs_mpi
def test_a_rank_that_raises_in_a_step_ends_every_rank_with_its_message(tmp_path):
    proc = train(2, tmp_path / "run", env=_env(FASTCAP_TEST_FAULT="1:3"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("fastcap: error: rank 1 of 2 failed at iteration 3: RuntimeError: "
            "FASTCAP_TEST_FAULT: rank 1 fails at 3 on purpose") in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@needs_mpi
def test_divergence_stops_every_rank_in_the_same_step_with_one_message(tmp_path):
    proc = train(2, tmp_path / "run", "--update-rule", "sgd", "--lr", "1e300")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("fastcap: error: training loss is ") == 1, proc.stderr


@needs_mpi
def test_a_rank_that_raises_outside_a_step_aborts_the_job_with_its_message(tmp_path):
    proc = train(2, tmp_path / "run", env=_env(FASTCAP_TEST_FAULT="1:eval"))
    assert proc.returncode != 0
    assert ("fastcap: error: rank 1 of 2: RuntimeError: FASTCAP_TEST_FAULT: rank 1 fails at "
            "eval on purpose; aborting every rank") in proc.stderr, proc.stderr


@needs_mpi
def test_a_killed_rank_ends_the_job(tmp_path):
    proc = train(2, tmp_path / "run", env=_env(FASTCAP_TEST_FAULT="1:4:kill"))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "epoch 1/2" not in proc.stdout  # killed in the first epoch, nothing trained on


@needs_mpi
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_under_mpiexec_saves_one_checkpoint_that_resumes(tmp_path, signum):
    """Ctrl-C, or SIGTERM (what Slurm sends every process of a job step before SIGKILL)."""
    out = tmp_path / "run"
    # Long enough to be interrupted; --print-every 1 tells when training runs.
    cmd = _cmd(2, "train", *SMALL, "--epochs", "200", "--print-every", "1", "--out", str(out))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("(Iteration 3 /"):
                break
        per_epoch = int(line.split("/")[1].split(")")[0]) // 200  # "(Iteration 3 / TOTAL) ..."
        os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C does to the job
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signum, stdout + stderr
    assert stderr.count("checkpoint saved to") == 1, stderr
    how = "interrupted" if signum == signal.SIGINT else "interrupted by SIGTERM"
    it = int(stderr.split(f"{how} after iteration ")[1].split()[0])
    # best.npz too if the signal landed after the first epoch's end (a loaded machine lets the
    # job run on past iteration 3 before the signal arrives); at the epoch's last iteration the
    # signal may come before or after its evaluation
    files = sorted(os.listdir(out))
    want = ["checkpoint.npz", "config.json", "history.json"]
    if it > per_epoch or (it == per_epoch and "best.npz" in files):
        want.append("best.npz")
    assert files == sorted(want), (it, per_epoch)
    losses, _, _ = run_state(out)
    assert losses.size == it >= 3
    assert load_checkpoint(str(out / "checkpoint.npz")).iteration == it


@needs_mpi
def test_a_setup_error_ends_every_rank_with_one_message(tmp_path):
    missing = tmp_path / "nowhere"
    proc = subprocess.run(_cmd(2, "train", "--data", str(missing), "--quiet"),
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count(f"fastcap: error: data directory {missing} does not exist") == 1, \
        proc.stderr


# ---------------------------------------------------------------- ranks that disagree
class _Ranks:
    """What ``comm.allgather`` returns on rank ``rank`` of ranks holding ``facts`` (no MPI)."""

    def __init__(self, facts, rank):
        self.facts, self.rank = facts, rank

    def allgather(self, mine):
        assert mine == self.facts[self.rank]
        return list(self.facts)

    def Get_size(self):
        return len(self.facts)

    def Get_rank(self):
        return self.rank

    def Abort(self, code):  # rank_guard's end of a job for an error of one rank alone
        raise AssertionError(f"rank {self.rank} aborted the job ({code}): not an agreed error")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_ranks_that_disagree_fail_alike_naming_the_rank_and_what_differs(data):
    """Any ranks with any differences in what must be equal: every rank raises the same
    RankError, naming the first rank that differs and a fact that does; equal ranks pass."""
    base = data.draw(st.dictionaries(st.sampled_from(["config.train.batch_size", "data train",
                                                      "resumed iteration", "config.model.cell"]),
                                     st.integers(0, 3), min_size=1))
    size = data.draw(st.integers(1, 5))
    facts = [dict(base) for _ in range(size)]
    for r in data.draw(st.sets(st.integers(1, size - 1), max_size=size - 1)) if size > 1 else ():
        key = data.draw(st.sampled_from(sorted(base)))
        facts[r][key] = base[key] + 1
    bad = [r for r, f in enumerate(facts) if f != base]
    messages = set()
    for rank in range(size):
        if not bad:
            distributed.agree(_Ranks(facts, rank), facts[rank])
            continue
        with pytest.raises(distributed.RankError) as exc:
            distributed.agree(_Ranks(facts, rank), facts[rank])
        messages.add(str(exc.value))
        # every rank raised it: under rank_guard rank 0 reports it, the others end quietly
        # (status 1), and none aborts the job as for an error of its own
        ranks = _Ranks(facts, rank)
        with pytest.raises(distributed.RankError if rank == 0 else SystemExit) as guarded:
            with distributed.rank_guard(ranks):
                distributed.agree(ranks, facts[rank])
        assert rank == 0 or guarded.value.code == 1
    if bad:
        (message,) = messages  # the same on every rank
        assert message.startswith(f"rank {bad[0]} of {size}")
        assert any(f"{k} is {facts[bad[0]][k]!r} there and {base[k]!r} on rank 0" in message
                   for k in base if facts[bad[0]][k] != base[k])


@needs_mpi
@pytest.mark.parametrize("args0, args1, what", [
    ([], ["--data-seed", "1"], "data train_captions"),
    ([], ["--hidden-dim", "8"], "config.model.hidden_dim"),
    (["--backend", "numpy"], ["--backend", "numba"], "backend")])
def test_ranks_given_different_data_or_options_stop_at_setup(tmp_path, args0, args1, what):
    """mpiexec MPMD: rank 1 gets other data, options or backend than rank 0. Without the
    agreement at setup, the ranks hung in mismatched collectives (or drifted apart); now one
    error names rank 1 and what differs."""
    base = _cmd(None, "train", *SMALL, "--out", str(tmp_path / "r"))
    proc = subprocess.run([MPIEXEC, "-n", "1", *base, *args0, ":", "-n", "1", *base, *args1],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fastcap: error:")]
    assert len(lines) == 1 and "rank 1 of 2 differs from rank 0" in lines[0], proc.stderr
    assert what in lines[0], lines[0]
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


@needs_mpi
def test_a_launcher_of_another_mpi_than_mpi4py_is_refused(tmp_path):
    """A launcher announcing K processes while mpi4py's MPI sees a world of 1 (the launcher
    and mpi4py from different MPI libraries): every process would train alone as rank 0
    into the same --out. It stops with one line saying so, before writing anything."""
    proc = subprocess.run(_cmd(None, "train", *SMALL, "--out", str(tmp_path / "r")),
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(OMPI_COMM_WORLD_SIZE="3"))  # what Open MPI's mpiexec sets
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("mpiexec started 3 processes but mpi4py's MPI" in proc.stderr
            and "the launcher and mpi4py come from different MPI libraries" in proc.stderr)
    assert not (tmp_path / "r").exists()
