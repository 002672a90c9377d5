"""Settings precedence (defaults < TOML < environment < flags) and typos as errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import SettingsError, load_settings


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "recagent.toml"
    config.write_text('[index]\nport = 9001\nchroma = "server"\n[retrieval]\npool = 50\n', encoding="utf-8")
    assert load_settings(environ={}).index.port == 8000
    assert load_settings(config, environ={}).index.port == 9001
    from_env = load_settings(config, environ={"RECAGENT_INDEX__PORT": "9002", "RECAGENT_DATA_DIR": "/d"})
    assert from_env.index.port == 9002 and from_env.index.chroma == "server" and from_env.retrieval.pool == 50
    assert str(from_env.data.data_dir) == "/d"
    flags = load_settings(config, environ={"RECAGENT_INDEX__PORT": "9002"}, **{"index.port": 9003,
                                                                               "index.host": None})
    assert flags.index.port == 9003 and flags.index.host == "127.0.0.1"


def test_typos_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "recagent.toml"
    config.write_text("[index]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"index.prot: no such setting"):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="RECAGENT_RETRIEVAL__POOLL"):
        load_settings(environ={"RECAGENT_RETRIEVAL__POOLL": "3"})
    with pytest.raises(SettingsError, match=r"retrieval\.rrf: no such setting"):
        load_settings(environ={}, **{"retrieval.rrf": 3})
    with pytest.raises(SettingsError, match=r"index\.port"):
        load_settings(environ={"RECAGENT_INDEX__PORT": "many"})
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_environment_json_and_aliases() -> None:
    settings = load_settings(environ={"RECAGENT_RETRIEVAL__FUSION_WEIGHTS": '{"collab": 2.0}',
                                      "RECAGENT_DATASET": "ml-100k", "PATH": "/bin"})
    assert settings.retrieval.fusion_weights == {"collab": 2.0}
    assert settings.data.dataset == "ml-100k"
    with pytest.raises(SettingsError, match="invalid JSON"):
        load_settings(environ={"RECAGENT_RETRIEVAL__FUSION_WEIGHTS": "{oops"})


def test_server_compute_threads() -> None:
    api = load_settings(environ={}).api
    assert api.torch_threads(in_process_llm=True) is None  # the in-process model uses every core
    assert api.torch_threads(in_process_llm=False) == 1  # beside a model server: one thread per turn
    assert load_settings(environ={"RECAGENT_API__COMPUTE_THREADS": "3"}).api.torch_threads(False) == 3
