"""Settings that `recagent tune` chose for one dataset, saved per dataset and used by default.

`recagent tune --dataset D` writes `<tuned_dir>/<D>.json` with the chosen values (dotted setting names,
e.g. retrieval.fusion_weights), the validation figure they reached and the run they came from. Whoever
builds an agent for D (eval, chat, serve) gets them through `with_tuned`, but only for settings nobody
set explicitly: defaults < shipped tuned values < your tuned values < TOML file < RECAGENT_* environment < flags.

The repository ships the values its published figures rely on in `models/tuned/<D>.json` (same format, plus the
command and the data hash that made them). A family of values (FAMILIES) tuned in `tuned_dir` replaces the shipped
family; the shipped values of the other families stay.
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


SHIPPED_TUNED = Path(__file__).resolve().parents[1] / "models" / "tuned"


def tuned_path(settings: Settings, dataset: str) -> Path:
    return settings.tuned_dir / f"{namespace_of(dataset)}.json"


def shipped_tuned_path(settings: Settings, dataset: str) -> Path:
    return (settings.shipped_tuned_dir or SHIPPED_TUNED) / f"{namespace_of(dataset)}.json"


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


def read_tuned(settings: Settings, dataset: str, shipped: bool = False) -> dict[str, Any] | None:
    """The user's tuned file for the dataset (or, with shipped=True, the one in the repository), None if absent."""
    path = shipped_tuned_path(settings, dataset) if shipped else tuned_path(settings, dataset)
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: invalid JSON ({exc}); run recagent tune again or delete it") from None
    return payload if isinstance(payload, dict) else None


def tuned_values(settings: Settings, dataset: str) -> dict[str, Any]:
    """The tuned values for the dataset: the shipped file's, with each family the user tuned replaced by theirs."""
    def values(payload: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in dict((payload or {}).get("values", {})).items() if k in TUNABLE}

    shipped, own = values(read_tuned(settings, dataset, shipped=True)), values(read_tuned(settings, dataset))
    own_families = {FAMILIES[k] for k in own}
    return {**{k: v for k, v in shipped.items() if FAMILIES[k] not in own_families}, **own}


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
    values = tuned_values(settings, dataset)
    applied = {k: v for k, v in values.items() if not _explicit(settings, k)}
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
