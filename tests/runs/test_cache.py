"""The persistent compilation cache's folder, its checks and its housekeeping (`runs.cache`)."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.runs.cache import (
    cache_environment,
    cache_folder,
    cache_size,
    clear_cache,
    default_folder,
    enable_cache,
    writable,
)

SETTINGS = (
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture
def jax_settings():
    """JAX's cache settings as they were, back after the test (this process keeps the session's cache)."""
    before = {name: getattr(jax.config, name) for name in SETTINGS}
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_the_option_wins_over_the_variables_and_they_over_the_default(tmp_path):
    env = {"STABLEBPTT_CACHE": "/env", "JAX_COMPILATION_CACHE_DIR": "/jax", "XDG_CACHE_HOME": "/xdg"}
    assert cache_folder("/option", env) == Path("/option")
    assert cache_folder(None, env) == Path("/env")
    assert cache_folder(None, {**env, "STABLEBPTT_CACHE": ""}) == Path("/jax")  # empty: not given
    assert cache_folder(None, {"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/stablebptt/jax")
    assert cache_folder("", {"HOME": str(tmp_path)}) == default_folder({"HOME": str(tmp_path)})


def test_off_turns_the_cache_off_and_the_option_can_turn_it_on_again():
    assert cache_folder("off", {"STABLEBPTT_CACHE": "/env"}) is None
    assert cache_folder(None, {"STABLEBPTT_CACHE": "OFF", "JAX_COMPILATION_CACHE_DIR": "/jax"}) is None
    assert cache_folder("/option", {"STABLEBPTT_CACHE": "off"}) == Path("/option")


def test_the_default_is_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_folder({}) == tmp_path / ".cache" / "stablebptt" / "jax"
    assert default_folder({"XDG_CACHE_HOME": "relative"}) == tmp_path / ".cache" / "stablebptt" / "jax"  # ignored
    assert default_folder({"XDG_CACHE_HOME": "/x"}) == Path("/x/stablebptt/jax")


def test_a_folder_is_writable_where_a_file_can_be_written_and_removed(tmp_path, unwritable_folder):
    assert writable(tmp_path / "a" / "b") is None
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is gone
    assert writable(tmp_path / "a" / "b") is None  # again: it exists
    assert writable(unwritable_folder) in ("Permission denied", "Not a directory")


def test_an_unwritable_cache_is_one_line_and_turns_the_cache_off(tmp_path, jax_settings, unwritable_folder):
    folder = unwritable_folder
    environ: dict[str, str] = {}
    warning = enable_cache(folder, environ)
    assert warning is not None and len(warning.splitlines()) == 1
    assert str(folder) in warning and "cannot be written" in warning and "STABLEBPTT_CACHE=off" in warning
    assert environ == cache_environment(None) and not jax.config.jax_enable_compilation_cache


def test_enabling_sets_jax_and_the_environment_of_later_processes(tmp_path, jax_settings):
    environ: dict[str, str] = {}
    assert enable_cache(tmp_path / "cache", environ) is None
    assert environ == cache_environment(tmp_path / "cache")
    assert environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "cache")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    assert jax.config.jax_enable_compilation_cache
    assert enable_cache(None, environ) is None and environ["JAX_ENABLE_COMPILATION_CACHE"] == "false"


def fill(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("jit_f-0123", "jit_g-4567"):
        (folder / f"{key}-cache").write_bytes(b"x" * 100)
        (folder / f"{key}-atime").write_bytes(b"t" * 8)
    (folder / ".lockfile").write_bytes(b"")
    (folder / "xla_gpu_per_fusion_autotune_cache_dir").mkdir()
    (folder / "xla_gpu_per_fusion_autotune_cache_dir" / "tuned").write_bytes(b"y" * 10)


def test_the_size_counts_entries_and_every_file_jax_wrote(tmp_path):
    fill(tmp_path / "cache")
    (tmp_path / "cache" / "notes.txt").write_text("mine")
    assert cache_size(tmp_path / "cache") == (2, 2 * 100 + 2 * 8 + 10)
    assert cache_size(tmp_path / "none") == (0, 0)


def test_clearing_removes_only_what_jax_wrote(tmp_path):
    folder = tmp_path / "cache"
    fill(folder)
    (folder / "notes.txt").write_text("mine")
    (folder / "mine-cache").mkdir()  # a folder of the user's named like an entry
    assert clear_cache(folder) == (2, 226)
    assert sorted(p.name for p in folder.iterdir()) == ["mine-cache", "notes.txt"]
    assert clear_cache(folder.parent / "none") == (0, 0)


def test_clearing_refuses_a_folder_that_is_no_cache(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(BadInput, match="not a compilation cache; nothing removed"):
        clear_cache(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(BadInput, match="is not a folder"):
        clear_cache(tmp_path / "mine" / "thesis.tex")
    (tmp_path / "empty").mkdir()
    assert clear_cache(tmp_path / "empty") == (0, 0)
