"""A small module with one type error and one deprecated call: the reference workflows'
example (fix-type-errors fixes the first, code-migration migrates the second)."""

from datetime import datetime


def total(prices: list[float]) -> float:
    return sum(prices)


def label(amount: float) -> str:
    return amount  # mypy: Incompatible return value type (got "float", expected "str")


def stamped(amount: float) -> str:
    return f"{datetime.utcnow():%Y-%m-%d} {amount:.2f}"
