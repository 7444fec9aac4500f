"""Payload mutations for property tests: every key path of a JSON body, random JSON values, edits.

Shared by every channel adapter's tests: a mutated payload must end as events or a Rejected, never
as any other exception.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a key of an object inside value (lists are walked by index)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(paths(child, (*prefix, index)))
    return out


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "SG", "SGD", "ID", "IDR", "READY_TO_SHIP", "1.5", "--1", "1e400", "0"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def mutate(body: dict[str, Any], path: tuple[Any, ...], op: tuple[Any, ...]) -> None:
    parent: Any = body
    for step in path[:-1]:
        if (isinstance(parent, dict) and step in parent) or (
            isinstance(parent, list) and isinstance(step, int) and step < len(parent)
        ):
            parent = parent[step]
        else:
            return  # an earlier mutation removed this branch
    if not isinstance(parent, dict):
        return
    if op[0] == "delete":
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = op[1]
