"""Metadata filters over catalog attributes, e.g. {"genres": "Comedy", "year": {"$gte": 1990}}.

A plain value matches equal scalars and lists that contain it. Operators: $eq $ne $gt $gte $lt $lte
$in $nin $all. $all needs every listed value; a list inside it stands for any one of its values
({"tags": {"$all": ["rock", ["metal", "death metal"]]}}). Several keys must all match. An attribute an
item lacks never matches (except under $ne/$nin).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import InvalidRequest

Filters = Mapping[str, Any]


class FilterError(InvalidRequest):
    """A filter with an unknown operator or a value of the wrong shape."""


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _values(attribute: Any) -> list[Any]:
    return list(attribute) if isinstance(attribute, list) else [attribute]


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _match_op(op: str, operand: Any, attribute: Any) -> bool:
    present = attribute is not None
    values = [_norm(v) for v in _values(attribute)] if present else []
    if op == "$eq":
        return _norm(operand) in values
    if op == "$ne":
        return _norm(operand) not in values
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f"{op} needs a list, got {operand!r}")
        hit = any(_norm(o) in values for o in operand)
        return hit if op == "$in" else not hit
    if op == "$all":
        if not isinstance(operand, list) or not operand:
            raise FilterError(f"$all needs a non-empty list, got {operand!r}")
        return all(any(_norm(o) in values for o in (wanted if isinstance(wanted, list) else [wanted]))
                   for wanted in operand)
    if op in _COMPARE:
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise FilterError(f"{op} needs a number, got {operand!r}")
        return any(isinstance(v, (int, float)) and _COMPARE[op](v, operand) for v in values)
    raise FilterError(f"unknown filter operator {op!r} (use $eq $ne $gt $gte $lt $lte $in $nin $all)")


def matches(attributes: Mapping[str, Any], filters: Filters) -> bool:
    for key, condition in filters.items():
        attribute = attributes.get(key)
        if isinstance(condition, Mapping):
            if not condition:
                raise FilterError(f"empty condition for {key!r}")
            if not all(_match_op(op, operand, attribute) for op, operand in condition.items()):
                return False
        elif not _match_op("$eq", condition, attribute):
            return False
    return True


_PLAIN = (str, int, float, bool)  # what an attribute value is compared with


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else \
        "null" if value is None else type(value).__name__


def validate(filters: Filters) -> None:
    """Raise FilterError now rather than on the first item: also for what would silently match nothing
    (a "$or" key, a list without an operator, an object or list inside $in)."""
    if not isinstance(filters, Mapping):
        raise FilterError(f"filters must be an object, got {_kind(filters)}")
    for key, condition in filters.items():
        if not isinstance(key, str) or key.startswith("$"):
            raise FilterError(f"{key!r} is not an attribute: filters map attribute names to conditions that must "
                              f"all match (there is no $or or $and)")
        if isinstance(condition, Mapping):
            for op, operand in condition.items():
                listed = op in ("$in", "$nin")
                if op not in ("$eq", "$ne") and not (listed and isinstance(operand, list)):
                    continue  # comparisons, $in without a list and unknown operators: matches() says what is wrong
                odd = [v for v in (operand if listed else [operand]) if not isinstance(v, _PLAIN)]
                if odd:
                    raise FilterError(f"{key!r}: {op} compares with strings, numbers or booleans, not "
                                      f"{_kind(odd[0])}")
        elif not isinstance(condition, _PLAIN):
            raise FilterError(f"{key!r}: a condition is a string, number or boolean, or an object of operators "
                              f"such as {{\"$in\": [...]}}, not {_kind(condition)}")
        matches({}, {key: condition})
