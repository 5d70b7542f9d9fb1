"""`cellbench gui` refuses bad options with exit status 2 and a message naming the problem."""

from __future__ import annotations

from cellbench.cli.main import main


def test_bad_options_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["gui", "--workspace", str(tmp_path / "file")]) == 2
    assert "workspace exists and is not a folder" in capsys.readouterr().err
    assert main(["gui", "--workspace", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be 0-65535" in capsys.readouterr().err
    assert main(["gui", "--workspace", str(tmp_path), "--slots", "0"]) == 2
    assert "--slots must be at least 1" in capsys.readouterr().err
    assert main(["gui", "--workspace", str(tmp_path), "--max-image-mb", "0"]) == 2
    assert "--max-image-mb must be positive" in capsys.readouterr().err
