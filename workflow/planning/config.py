"""The config's checks and the workflow's naming: schema validation with defaults, canonical job parameters,
rule names and the result paths every stage writes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DATA = "results/data/{dataset}.zarr"
FEATURES = "results/features/{dataset}/{model}/{timestep}/shard-{shard}.zarr"
# One small file per cached array listing its shards: probe jobs depend on it instead of on every shard,
# which keeps a paper-scale DAG (hundreds of shards per array) small and fast to build.
FEATURE_INDEX = "results/features/{dataset}/{model}/{timestep}/shards.txt"
PROBE = "results/probes/{dataset}/{task}/{source}/{probe}"


class PlanError(ValueError):
    """The config describes a workflow that cannot run."""


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted (recursively): job parameters that do not depend on the
    order a config was written in, so reordering keys re-runs nothing."""
    return json.loads(json.dumps(value, sort_keys=True))


def rule_token(name: str) -> str:
    """A model name as it appears in a rule name (``extract_<token>``)."""
    return re.sub(r"\W", "_", name)


def _with_defaults(validator_class: type) -> type:
    """A validator that also fills in the schema's ``default`` values, as Snakemake's validate does."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(key, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def with_registry_choices(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the model families and presets the registry knows as the allowed values of ``family``
    and ``preset`` (they are facts of the family classes, not a second list to keep in step)."""
    from extractors.registry import families, presets

    model = schema["properties"]["models"]["additionalProperties"]["properties"]
    model["family"]["enum"] = sorted(families())
    model["preset"]["enum"] = sorted(presets())  # unavailable ones too: resolving them says why
    return schema


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Check ``config`` against the schema (filling defaults); raise one line naming the bad key."""
    schema = with_registry_choices(yaml.safe_load(Path(schema_path).read_text()))
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise PlanError(f"{where}: {error.message}")


