"""plugin_dirs_needed: the node gets what its applications declare, nothing else (pure, no broker)."""

from __future__ import annotations

from pathlib import Path

from harness.stack.rabbitmq import plugin_dirs_needed


def _app(plugins: Path, name: str, version: str, deps: list[str], included: list[str] | None = None) -> None:
    ebin = plugins / f"{name}-{version}" / "ebin"
    ebin.mkdir(parents=True)
    inc = f",\n  {{included_applications, [{', '.join(included)}]}}" if included else ""
    ebin.joinpath(f"{name}.app").write_text(
        f"{{application, {name},\n [{{vsn, \"{version}\"}},\n  {{applications, [{', '.join(deps)}]}}{inc}]}}.\n")


def test_the_closure_of_the_roots_and_no_optional_plugin(tmp_path: Path) -> None:
    _app(tmp_path, "rabbit", "3.10.8", ["kernel", "stdlib", "rabbit_common", "ra"])
    _app(tmp_path, "rabbit_common", "3.10.8", ["kernel", "recon"])
    _app(tmp_path, "ra", "2.2.0", ["aten"], included=["gen_batch_server"])
    _app(tmp_path, "aten", "0.5.8", [])
    _app(tmp_path, "gen_batch_server", "0.8.8", [])
    _app(tmp_path, "recon", "2.5.2", [])
    _app(tmp_path, "rabbitmq_mqtt", "3.10.8", ["rabbit"])  # an optional plugin: left out
    (tmp_path / "README").write_text("not an application")
    got = plugin_dirs_needed(tmp_path, ("rabbit",))
    assert got is not None
    assert sorted(got) == ["aten", "gen_batch_server", "ra", "rabbit", "rabbit_common", "recon"]
    assert got["ra"] == tmp_path / "ra-2.2.0"


def test_an_unknown_layout_keeps_the_whole_directory(tmp_path: Path) -> None:
    _app(tmp_path, "ra", "2.2.0", [])
    assert plugin_dirs_needed(tmp_path, ("rabbit",)) is None
    assert plugin_dirs_needed(tmp_path / "missing", ("rabbit",)) is None
