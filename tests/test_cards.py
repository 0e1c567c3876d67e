import subprocess

from usecases.core.cards import code_commit


def test_code_commit_is_dirty_only_for_code_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert code_commit(tmp_path) == "unknown"  # not a repository
    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = code_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "dvc.lock").write_text("b\n")  # pipeline outputs change during dvc repro
    assert code_commit(tmp_path) == clean
    (tmp_path / "src/a.py").write_text("x = 2\n")
    assert code_commit(tmp_path) == clean + "-dirty"
