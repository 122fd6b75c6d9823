"""Checkpoints: only renamed (complete) folders count; rotation keeps the newest."""

from hftk.training.checkpoint import (
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    publish_checkpoint,
    remove_partial_checkpoints,
    temporary_checkpoint,
)


def save(output_dir, step, keep=2):
    tmp = temporary_checkpoint(output_dir, step)
    (tmp / "weights").write_text(str(step))
    TrainState(step=step).save(tmp)
    return publish_checkpoint(tmp, step, keep)


def test_rotation_keeps_the_newest_in_numeric_order(tmp_path):
    for step in (5, 10, 100, 20):
        save(tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-20", "step-100"]
    assert TrainState.load(latest_checkpoint(tmp_path)).step == 100


def test_partial_checkpoints_are_ignored_and_removed(tmp_path):
    save(tmp_path, 4)
    partial = temporary_checkpoint(tmp_path, 8)  # a run killed while writing step 8
    (partial / "weights").write_text("half")
    unfinished = tmp_path / "checkpoints" / "step-12"  # renamed by hand, no state file
    unfinished.mkdir()
    assert latest_checkpoint(tmp_path).name == "step-4"
    remove_partial_checkpoints(tmp_path)
    assert not partial.exists()


def test_state_round_trip(tmp_path):
    state = TrainState(step=3, epoch=1, batches_in_epoch=7, tokens_seen=99, best_metric=0.5, log_history=[{"step": 1}])
    state.save(tmp_path)
    assert TrainState.load(tmp_path) == state
    assert not list(tmp_path.glob(".*tmp"))
