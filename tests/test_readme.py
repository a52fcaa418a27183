"""The README's Python examples run as written (with the meta-training shortened)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_setup_commands():
    commands = re.findall(r"```bash\n(pip install .*?)\n```", README.read_text())
    assert len(commands) == 2
    assert "learned-opt meta-train" in commands[0] and "learned-opt evaluate" in commands[0]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index].replace("num_steps=300", "num_steps=3")
    namespace: dict = {}
    exec(compile(code, f"README block {index}", "exec"), namespace)
    if "tx" in namespace and "opt" in namespace:
        assert (tmp_path / "my_opt.msgpack").exists()
    if "trainer" in namespace:
        assert int(namespace["state"].step) == 3
        assert len(list((tmp_path / "runs/linreg/checkpoints").iterdir())) == 1
