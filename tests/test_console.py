"""Ctrl-C at any moment of `hftk`: one line, exit 130, no half-made run folder."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import hftk.cli
from hftk.console import INTERRUPTED_EXIT, caused_by_interrupt, main
from hftk.training import output_lock
from hftk.training.outputs import removes_new_output_dir_on_error


def _interrupted_import():
    """What an interrupted import can look like: another error raised while the KeyboardInterrupt unwinds."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as interrupt:
        raise RuntimeError("Error calling __set_name__ on 'Field' instance") from interrupt


def test_an_error_raised_while_an_interrupt_unwinds_counts_as_the_interrupt():
    with pytest.raises(RuntimeError) as raised:
        _interrupted_import()
    assert caused_by_interrupt(raised.value) and caused_by_interrupt(KeyboardInterrupt())
    assert not caused_by_interrupt(RuntimeError("a real bug")) and not caused_by_interrupt(None)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, _interrupted_import])
def test_interrupt_anywhere_in_the_cli_is_one_line_and_exit_130(monkeypatch, capsys, interrupt):
    def cli_main():
        if isinstance(interrupt, type):
            raise interrupt
        interrupt()

    monkeypatch.setattr(hftk.cli, "main", cli_main)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == INTERRUPTED_EXIT
    assert capsys.readouterr().err == "interrupted\n"


def test_a_real_error_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(hftk.cli, "main", lambda: (_ for _ in ()).throw(ValueError("a real bug")))
    with pytest.raises(ValueError, match="a real bug"):
        main()


def test_an_interrupted_run_leaves_no_folder_it_created(tmp_path: Path):
    output_dir = tmp_path / "runs" / "new"

    @removes_new_output_dir_on_error
    def run(recipe):
        output_lock.hold_for_run(output_dir)  # as every run does once its processes are up
        (output_dir / "logs").mkdir(parents=True)
        raise KeyboardInterrupt  # e.g. Ctrl-C while the tokenizer trains

    with pytest.raises(KeyboardInterrupt):
        run(SimpleNamespace(output=SimpleNamespace(output_dir=str(output_dir))))
    assert not (tmp_path / "runs").exists()
