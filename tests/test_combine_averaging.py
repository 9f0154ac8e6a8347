"""combine --model: weight averages and greedy soups of real tiny trainings, assessed honestly.

(a) a high-learning-rate MLP whose last-k average beats its best single checkpoint on an
independent held-out set: combine adopts it, and its corrected-gain interval covers the
held-out gain; (b) a run where no average helps on held-out data: combine adopts nothing;
(c) a BatchNorm model: statistics refreshed on training data (update_bn) or not, the held-out
accuracy of both reported. Averages equal a hand-written state-dict mean exactly.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from ckptaudit.combining import combine_run  # noqa: E402
from ckptaudit.combining.averaging import StateSum, average_files  # noqa: E402
from ckptaudit.errors import CkptauditError  # noqa: E402
from ckptaudit.store.reader import read_run  # noqa: E402
from tests.combine_training import held_out_accuracy, held_out_log_loss, mlp, mlp_bn, train_run  # noqa: E402


def test_average_equals_a_hand_written_state_dict_mean_exactly(tmp_path):
    states = []
    for i in range(4):
        torch.manual_seed(i)
        m = mlp(batchnorm=True)
        torch.nn.init.normal_(m[0].weight)
        m[3].running_mean.normal_()
        m[3].num_batches_tracked += i
        states.append(m.state_dict())
        torch.save(m.state_dict(), tmp_path / f"m{i}.pt")
    files = [tmp_path / f"m{i}.pt" for i in range(4)]
    avg = average_files(files, [1, 2, 1, 1])
    for name, ref in states[0].items():
        if ref.is_floating_point():
            total = (
                states[0][name].double() * 1 + states[1][name].double() * 2 + states[2][name].double() + states[3][name].double()
            )
            hand = (total / 5).to(ref.dtype)
        else:
            hand = states[3][name]  # integer buffers: the newest member's
        assert avg[name].dtype == ref.dtype
        assert torch.equal(avg[name], hand), name


def test_only_identical_architectures_are_averaged(tmp_path):
    torch.save(mlp().state_dict(), tmp_path / "a.pt")
    torch.save(mlp(batchnorm=True).state_dict(), tmp_path / "b.pt")
    with pytest.raises(CkptauditError, match="different parameter names"):
        average_files([tmp_path / "a.pt", tmp_path / "b.pt"])
    wide = mlp().state_dict()
    wide["0.weight"] = torch.zeros(17, 20)
    s = StateSum()
    s.add(mlp().state_dict(), label="first")
    with pytest.raises(CkptauditError, match="0.weight"):
        s.add(wide, label="second")


def test_a_high_lr_run_adopts_its_last_k_average_and_the_interval_covers_held_out(tmp_path):
    tr = train_run(tmp_path / "run", lr=0.5, epochs=12, batch=16)
    singles = {c.name: held_out_log_loss(c.path / "model.pt", tr.test) for c in read_run(tr.path).checkpoints}
    r = combine_run(read_run(tr.path), "log_loss", model=mlp, data=tr.val, families=("avg-last-k",), resamples=100)
    assert r.adopt, r.decision
    assert r.chosen.startswith("avg-last-") and r.written is not None
    meta = json.loads((r.written / "meta.json").read_text())
    assert meta["kind"] == "weight-average" and len(meta["members"]) == int(r.chosen.rsplit("-", 1)[1])
    held_out_gain = singles[r.best_single] - held_out_log_loss(r.written / "model.pt", tr.test)
    print(
        f"\n(a) corrected gain {r.corrected_gain:+.4f} [{r.interval[0]:+.4f}, {r.interval[1]:+.4f}], held-out gain {held_out_gain:+.4f}"
    )
    assert held_out_gain > 0  # the average beats the best single checkpoint on new data
    assert r.interval[0] <= held_out_gain <= r.interval[1]
    # the written checkpoint's predictions are its weights' (rank reads them as any checkpoint)
    import ckptaudit

    ranked = ckptaudit.rank(tr.path, "log_loss")
    assert ranked.iloc[0]["checkpoint"] == r.written.name


def test_a_run_where_no_average_helps_adopts_nothing(tmp_path):
    # a low learning rate: every epoch is better than the one before, so averaging in the
    # earlier, worse epochs cannot help
    tr = train_run(tmp_path / "run", lr=0.01, epochs=8, batch=64)
    singles = {c.name: held_out_log_loss(c.path / "model.pt", tr.test) for c in read_run(tr.path).checkpoints}
    r = combine_run(read_run(tr.path), "log_loss", model=mlp, data=tr.val, resamples=100, write=True)
    assert not r.adopt and r.decision.startswith("no combination helps")
    assert json.loads((r.written / "meta.json").read_text())["combine"]["adopted"] is False
    held_out_gain = singles[r.best_single] - held_out_log_loss(r.written / "model.pt", tr.test)
    print(
        f"\n(b) corrected gain {r.corrected_gain:+.4f} [{r.interval[0]:+.4f}, {r.interval[1]:+.4f}], held-out gain {held_out_gain:+.4f}"
    )
    assert held_out_gain <= 0.002


def test_batchnorm_refresh_is_done_on_training_rows_or_said_plainly(tmp_path):
    # high learning rate with momentum: the members' weights differ enough that the averaged
    # running statistics are not the statistics of the averaged weights
    tr = train_run(tmp_path / "run", lr=0.3, momentum=0.9, epochs=8, batch=16, batchnorm=True)
    r = combine_run(
        read_run(tr.path), "log_loss", model=mlp_bn, data=tr.val, train_data=tr.train, families=("avg-last-k",),
        resamples=50, write=True, batch_size=500,
    )  # fmt: skip
    assert not any("NOT refreshed" in n for n in r.notes)
    assert json.loads((r.written / "meta.json").read_text())["combine"]["batchnorm_refreshed"] is True
    refreshed = mlp_bn()
    refreshed.load_state_dict(torch.load(r.written / "model.pt", weights_only=True))
    # update_bn over 4 equal batches: the running mean is the mean of the training rows'
    # BatchNorm inputs under the averaged weights
    with torch.no_grad():
        pre = refreshed[2](refreshed[1](refreshed[0](tr.train[0])))
    torch.testing.assert_close(refreshed[3].running_mean, pre.mean(0), rtol=1e-4, atol=1e-5)
    # the same members averaged without the refresh
    members = [m["checkpoint"] for m in json.loads((r.written / "meta.json").read_text())["members"]]
    plain = mlp_bn()
    plain.load_state_dict(average_files([tr.path / "checkpoints" / m / "model.pt" for m in members]))
    acc_refreshed, acc_plain = held_out_accuracy(refreshed, tr.test), held_out_accuracy(plain, tr.test)
    print(f"\n(c) held-out accuracy of {r.chosen}: BatchNorm refreshed {acc_refreshed:.4f}, not refreshed {acc_plain:.4f}")
    assert acc_refreshed > acc_plain + 0.005  # the refresh matters here
    # without training rows the averages keep averaged statistics, and the output says so
    r2 = combine_run(
        read_run(tr.path), "log_loss", model=mlp_bn, data=tr.val, families=("avg-last-k",), resamples=20, dry_run=True
    )
    assert any("BatchNorm statistics NOT refreshed (no --train-data)" in n for n in r2.notes)
