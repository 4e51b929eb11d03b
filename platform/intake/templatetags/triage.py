"""Small filters of the triage pages: a case's entry in a per-case mapping, a similarity as a percentage."""

from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict[Any, Any] | None, key: Any) -> Any:
    """`{{ likely_duplicates|get_item:case.pk }}`: templates cannot index a dict by a variable."""
    return (mapping or {}).get(key)


@register.filter
def percent(value: float) -> str:
    return f"{100 * float(value):.0f}%"
