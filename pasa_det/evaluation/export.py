"""Writing metrics as strict JSON."""

import math


def json_ready(value):
    """`value` with NaN/inf floats (an AP with no objects of that size, say) as None,
    which JSON can hold, and mappings turned into plain dicts."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
