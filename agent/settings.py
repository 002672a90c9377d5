"""The one settings object. Precedence, lowest first: defaults, a TOML file, environment variables
(RECAGENT_..., nested with '__', e.g. RECAGENT_INDEX__CHROMA=server), then CLI flags (passed as
keyword arguments). Any unknown key, in any of these places, is an error.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from index.config import DataConfig, IndexConfig
from index.errors import RecagentError

ENV_PREFIX = "RECAGENT_"


class SettingsError(RecagentError):
    """A setting that does not exist or has a wrong value."""


class RetrievalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recent_items: int = Field(5, ge=1, description="recent items the item-to-item generator starts from")
    recency_decay: float = Field(0.9, gt=0, le=1, description="weight decay per step back in the history")
    sequence_groups: int = Field(3, ge=1, description="recent time groups the sequential generator uses")
    pool: int = Field(200, ge=10, description="candidates each generator contributes to fusion")
    rrf_k: float = Field(20.0, gt=0, description="reciprocal rank fusion constant")
    fusion_weights: dict[str, float] = Field(
        default_factory=lambda: {"collab": 1.0, "item2item": 0.0, "sequential": 1.0, "text": 0.3,
                                 "popularity": 0.1},
        description="weight of each generator in the fused ranking; defaults chosen by "
                    "'recagent eval tune' on ml-latest-small's validation split")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    data: DataConfig = DataConfig()
    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    runs_dir: Path = Field(Path("runs"), description="where evaluation runs are saved")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings


_TOP_LEVEL_ENV = {"DATA_DIR": "data__data_dir", "DATASET": "data__dataset"}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_env_names(environ: dict[str, str]) -> None:
    """Reject RECAGENT_* variables that name no setting (pydantic-settings would ignore them)."""
    for name in environ:
        if not name.startswith(ENV_PREFIX) or name[len(ENV_PREFIX):] in _TOP_LEVEL_ENV:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        model: Any = Settings
        for part in parts:
            fields = getattr(model, "model_fields", None)
            if fields is None:
                break
            if part not in fields:
                raise SettingsError(f"environment variable {name}: no setting named {'.'.join(parts)}")
            model = fields[part].annotation


def load_settings(config_file: Path | None = None, environ: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build the settings: defaults < TOML file < RECAGENT_* environment < overrides (CLI flags).

    `overrides` use dotted paths as keys, e.g. {"index.chroma": "server"}; None values are ignored.
    """
    environ = dict(os.environ if environ is None else environ)
    _check_env_names(environ)
    layered: dict[str, Any] = {}
    if config_file is not None:
        try:
            layered = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{config_file}: settings file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_file}: invalid TOML: {exc}") from None
    env_layer: dict[str, Any] = {}
    for short, dotted in _TOP_LEVEL_ENV.items():
        if ENV_PREFIX + short in environ:
            env_layer = _deep_merge(env_layer, _nest(dotted.replace("__", "."), environ[ENV_PREFIX + short]))
    cli_layer: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is not None:
            cli_layer = _deep_merge(cli_layer, _nest(dotted, value))
    # Environment variables are read by pydantic-settings; the file goes under them and flags over them.
    # To get that order, the file is read first, then the environment settings model, then flags.
    try:
        from_env = Settings.model_validate(layered)  # validates the file (extra keys are errors)
        env_model = _env_only(environ)
        merged = _deep_merge(from_env.model_dump(exclude_unset=True), env_model)
        merged = _deep_merge(merged, env_layer)
        merged = _deep_merge(merged, cli_layer)
        return _construct(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file)) from None


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    parts = dotted.split(".")
    cursor = node
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return node


def _env_only(environ: dict[str, str]) -> dict[str, Any]:
    """The values pydantic-settings reads from RECAGENT_* variables, without defaults."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)
                           and k[len(ENV_PREFIX):] not in _TOP_LEVEL_ENV})
        return Settings().model_dump(exclude_unset=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _construct(values: dict[str, Any]) -> Settings:
    saved = dict(os.environ)
    try:  # keep the environment from being read a second time under the flags
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        return Settings(**values)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = "no such setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{where}: {message}")
    source = f" (settings file {config_file}, environment or flags)" if config_file else ""
    return "invalid settings" + source + ": " + "; ".join(lines)
