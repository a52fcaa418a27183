"""The persistent compilation cache: its folder, the environment variable, and a real reuse."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

import learned_opt as lo
from learned_opt import cli
from learned_opt.compilation_cache import ENV_VAR

SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture(autouse=True)
def _keep_jax_settings(monkeypatch):
    """Each test leaves JAX's cache settings (the test suite's) as it found them."""
    saved = {name: getattr(jax.config, name) for name in SETTINGS}
    monkeypatch.delenv(ENV_VAR, raising=False)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_the_cache_goes_to_the_given_folder_and_keeps_every_program(tmp_path):
    folder = lo.enable_compilation_cache(tmp_path / "new" / "cache")
    assert folder is not None and folder == tmp_path / "new" / "cache" and folder.is_dir()
    assert jax.config.values["jax_compilation_cache_dir"] == str(folder)
    assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == 0
    assert jax.config.values["jax_persistent_cache_min_entry_size_bytes"] == -1  # no size limit


def test_the_folder_comes_from_the_environment_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert lo.enable_compilation_cache() == tmp_path / "env"
    assert lo.enable_compilation_cache(tmp_path / "arg") == tmp_path / "arg"  # path wins
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lo.enable_compilation_cache() == tmp_path / "xdg" / "learned_opt" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "learned_opt" / "jax"
    assert lo.enable_compilation_cache() == expected
    assert jax.config.values["jax_compilation_cache_dir"] == str(expected)


@pytest.mark.parametrize("value", ["off", "OFF", "", " off "])
def test_off_or_empty_turns_the_cache_off(tmp_path, monkeypatch, value):
    lo.enable_compilation_cache(tmp_path)
    monkeypatch.setenv(ENV_VAR, value)
    assert lo.enable_compilation_cache() is None
    assert jax.config.values["jax_compilation_cache_dir"] is None
    lo.enable_compilation_cache(tmp_path)
    assert lo.enable_compilation_cache(value) is None
    assert jax.config.values["jax_compilation_cache_dir"] is None


def test_a_bad_folder_is_refused_in_one_line_naming_it(tmp_path, monkeypatch):
    before = jax.config.values["jax_compilation_cache_dir"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        (3, TypeError, "path: expected a folder path, 'off' or None, got 3"),
        (b"/tmp", TypeError, "path: expected a folder path, 'off' or None, got b'/tmp'"),
        (a_file, ValueError, f"path: {a_file} is a file, not a folder"),
        (a_file / "sub", ValueError, f"path: cannot create the folder {a_file / 'sub'} ("),
    ]
    for value, error, message in cases:
        with pytest.raises(error) as info:
            lo.enable_compilation_cache(value)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    monkeypatch.setenv(ENV_VAR, str(a_file))
    with pytest.raises(ValueError, match=f"^{ENV_VAR}: {a_file} is a file, not a folder$"):
        lo.enable_compilation_cache()
    assert jax.config.values["jax_compilation_cache_dir"] == before  # nothing changed


def test_the_command_line_refuses_a_bad_cache_folder_with_usage_status(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "file"))
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(tmp_path / "opt.msgpack"), "--family", "quadratic"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"learned-opt evaluate: error: {ENV_VAR}: {tmp_path / 'file'} is a file, not a folder\n"
    )


#: Enables the cache from $LEARNED_OPT_CACHE_DIR, runs a small jit, prints JAX's own count of
#: persistent-cache hits and misses (its compiler's log records).
PROGRAM = textwrap.dedent(
    """
    import json, logging
    import jax, jax.numpy as jnp
    import learned_opt as lo

    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    compiler_log = logging.getLogger("jax._src.compiler")
    compiler_log.addHandler(handler)
    compiler_log.setLevel(logging.DEBUG)
    lo.enable_compilation_cache()
    f = jax.jit(lambda x: jnp.tanh(x) @ x.T + 1.0)
    f(jnp.ones((3, 3))).block_until_ready()
    print(json.dumps({
        "hits": sum(m.startswith("Persistent compilation cache hit") for m in records),
        "misses": sum(m.startswith("PERSISTENT COMPILATION CACHE MISS") for m in records),
    }))
    """
)


def _run(cache: str) -> dict:
    env = {**os.environ, ENV_VAR: cache}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_programs_the_first_compiled(tmp_path):
    cache = tmp_path / "cache"
    first = _run(str(cache))
    entries = sorted(p.name for p in cache.iterdir())
    assert first["hits"] == 0 and first["misses"] >= 1
    assert len(entries) == first["misses"]  # every program compiled was written
    second = _run(str(cache))
    assert second == {"hits": first["misses"], "misses": 0}  # all loaded, none compiled
    assert sorted(p.name for p in cache.iterdir()) == entries
    assert _run("off")["hits"] == 0  # off: compiled again


def test_a_default_folder_that_cannot_be_made_turns_the_cache_off(tmp_path, monkeypatch):
    # Nobody asked for this folder, so an unwritable home must not stop the program.
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert lo.enable_compilation_cache() is None
    assert jax.config.values["jax_compilation_cache_dir"] is None
