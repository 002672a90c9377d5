"""Settings that `recagent tune` chose for one dataset, saved per dataset and used by default.

`recagent tune --dataset D` writes `<tuned_dir>/<D>.json` with the chosen values (dotted setting names,
e.g. retrieval.fusion_weights), the validation figure they reached and the run they came from. Whoever
builds an agent for D (eval, chat, serve) gets them through `with_tuned`, but only for settings nobody
set explicitly: defaults < tuned values < TOML file < RECAGENT_* environment < flags.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.settings import Settings
from core.errors import SettingsError
from index.store import namespace_of

# what can be tuned, by family: a tuning replaces its whole family and keeps the others (values chosen together
# stay together: `tune --protocol crs` chooses the query weight with the fusion weights)
FAMILIES = {"retrieval.fusion_weights": "fusion", "retrieval.rrf_k": "fusion", "retrieval.query_weight": "fusion",
            "retrieval.linear_weights": "linear"}
TUNABLE = tuple(FAMILIES)


def tuned_path(settings: Settings, dataset: str) -> Path:
    return settings.tuned_dir / f"{namespace_of(dataset)}.json"


def save_tuned(settings: Settings, dataset: str, values: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write the chosen values with where they came from (metric, validation figure, run file). The values an
    earlier tuning saved for another family (FAMILIES) stay: `--protocol candidates20` fits the linear ranker and
    keeps the fusion weights `--protocol loo` chose. `sources` says which tuning each value came from; the
    top-level record is the latest tuning's."""
    unknown = sorted(set(values) - set(TUNABLE))
    if unknown:
        raise SettingsError(f"not tunable: {', '.join(unknown)}")
    path = tuned_path(settings, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = read_tuned(settings, dataset) or {}
    replaced = {FAMILIES[k] for k in values}
    kept = {k: v for k, v in dict(earlier.get("values", {})).items() if k in FAMILIES and FAMILIES[k] not in replaced}
    sources = {k: v for k, v in dict(earlier.get("sources", {})).items() if k in kept}
    saved = datetime.now(UTC).isoformat()
    payload = {"dataset": namespace_of(dataset), "values": {**kept, **values}, "saved": saved,
               "sources": {**sources, **{k: {**record, "saved": saved} for k in values}}, **record}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_tuned(settings: Settings, dataset: str) -> dict[str, Any] | None:
    path = tuned_path(settings, dataset)
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: invalid JSON ({exc}); run recagent tune again or delete it") from None
    return payload if isinstance(payload, dict) else None


def _explicit(settings: Settings, dotted: str) -> bool:
    node: BaseModel = settings
    *parents, last = dotted.split(".")
    for part in parents:
        if part not in node.model_fields_set:
            return False
        node = getattr(node, part)
    return last in node.model_fields_set


def with_tuned(settings: Settings, dataset: str) -> tuple[Settings, dict[str, Any]]:
    """The settings with the dataset's tuned values where nothing explicit overrides them, and what was
    applied ({} when there is no tuned file or everything was set explicitly)."""
    payload = read_tuned(settings, dataset)
    if payload is None:
        return settings, {}
    applied = {k: v for k, v in dict(payload.get("values", {})).items() if k in TUNABLE and not _explicit(settings, k)}
    if not applied:
        return settings, {}
    updates: dict[str, dict[str, Any]] = {}
    for dotted, value in applied.items():
        section, name = dotted.split(".", 1)
        updates.setdefault(section, {})[name] = value
    changed = {section: getattr(settings, section).model_copy(update=fields) for section, fields in updates.items()}
    tuned = settings.model_copy(update=changed)
    # validate the values the file brought in (a hand-edited file must not slip past the types)
    Settings.model_validate(json.loads(tuned.model_dump_json()))
    return tuned, applied
