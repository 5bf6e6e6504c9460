"""The plan engine: load plan.yaml, merge defaults, validate, hash, build objects."""
from fx_cli.plan.loader import Plan, load_plan

__all__ = ["Plan", "load_plan"]
