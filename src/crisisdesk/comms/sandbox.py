"""The Jinja2 sandbox that operator-written templates run in, with their cost bounded.

Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` hides unsafe attributes but lets a
template spend as much CPU and memory as it likes: ``'x'|center(10**9)`` allocates a gigabyte in
one step, a macro that calls itself twice per level never ends, and rendering runs on the web
process's event loop, so either would stall every request. Here each render gets a budget of
steps (loop iterations, calls, filters) and every operation that can grow a value is checked
*before* it runs, against :data:`MAX_VALUE_SIZE`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

# The largest string or list a template may build; MAX_OUTPUT of a whole variant is smaller.
MAX_VALUE_SIZE = 200_000
# The largest integer a template may build, in bits (10**1000 is about 3,300 bits).
MAX_INT_BITS = 4096
# Loop iterations, calls and filters one render may run; real templates use a few hundred.
MAX_STEPS = 50_000
# A width or precision with seven digits or more in a format string pads to megabytes.
_HUGE_FORMAT_WIDTH = re.compile(r"\d{7,}")

_steps: ContextVar[list[int] | None] = ContextVar("template_steps", default=None)


class Budget:
    """Opens a step budget for the renders inside it (contexts nest: the innermost counts)."""

    def __enter__(self) -> Budget:
        self._token = _steps.set([MAX_STEPS])
        return self

    def __exit__(self, *exc: object) -> None:
        _steps.reset(self._token)


def _step() -> None:
    left = _steps.get()
    if left is None:
        return
    left[0] -= 1
    if left[0] < 0:
        raise SecurityError(f"the template takes more than {MAX_STEPS} steps to render")


def _amount(value: Any) -> int:
    """How much a value can make an operation allocate: a length, or an integer's magnitude."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return abs(value) if value.bit_length() < 64 else MAX_VALUE_SIZE + 1
    if isinstance(value, float):
        return int(min(abs(value), MAX_VALUE_SIZE + 1)) if value == value else 0
    if isinstance(value, str | bytes | list | tuple | dict | set):
        return len(value)
    return 0


def _check_arguments(subject: Any, args: Iterable[Any]) -> None:
    """Refuse a call that could build an oversized value before it runs.

    A number argument is a width or a count (``center(10**9)``); a text or list argument is
    repeated up to once per item of the subject (``join``, ``replace``).
    """
    if isinstance(subject, str) and _HUGE_FORMAT_WIDTH.search(subject):
        raise SecurityError("a width in this template is too large")
    base = max(1, _amount(subject))
    for arg in args:
        inner = list(arg.values()) if isinstance(arg, dict) else arg if isinstance(arg, list | tuple) else [arg]
        for item in inner:
            amount = _amount(item)
            grows = amount if isinstance(item, int | float) else base * amount if amount > 1 else 0
            if grows > MAX_VALUE_SIZE:
                raise SecurityError("a value in this template would grow too large")


def _check_result(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError("a number in this template is too large")
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_SIZE:
        raise SecurityError("a value in this template would grow too large")
    return value


def _bounded_iter(value: Any) -> Iterator[Any]:
    for item in value:
        _step()
        yield item


def _bounded_filter(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    # A filter that takes the environment or a context gets it first; the value comes next.
    skip = 0 if _PassArg.from_obj(filter_function) is None else 1

    @functools.wraps(filter_function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if len(args) > skip:
            _check_arguments(args[skip], [*args[skip + 1 :], *kwargs.values()])
        return _check_result(filter_function(*args, **kwargs))

    return bounded


class BoundedSandbox(SandboxedEnvironment):
    """A sandbox whose renders stop at a step budget and refuse to build oversized values."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(f) for name, f in self.filters.items()}
        self.filters["_bounded_iter"] = _bounded_iter
        self.filters["_bounded_value"] = _check_result

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Loops and ``~`` compile to plain Python the sandbox cannot intercept: the tree is
        # rewritten so each loop counts its iterations and each ``~`` has its result checked.
        tree: nodes.Template = _Bound().visit(super()._parse(source, name, filename))
        return tree

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        _step()
        if operator_name == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(1, left.bit_length()) * right > MAX_INT_BITS:
                raise SecurityError("a number in this template is too large")
        elif operator_name == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError("a number in this template is too large")
            elif _amount(left) * _amount(right) > MAX_VALUE_SIZE:
                raise SecurityError("repetition too large in a template")
        elif operator_name == "+" and not isinstance(left, int | float):
            if _amount(left) + _amount(right) > MAX_VALUE_SIZE:
                raise SecurityError("a value in this template would grow too large")
        elif operator_name == "%" and isinstance(left, str):
            _check_arguments(left, [right])
        return _check_result(super().call_binop(context, operator_name, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        _check_arguments(getattr(__obj, "__self__", None), [*args, *kwargs.values()])
        return _check_result(super().call(__context, __obj, *args, **kwargs))


class _Bound(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.Node:
        loop = self.generic_visit(node)
        assert isinstance(loop, nodes.For)
        loop.iter = nodes.Filter(loop.iter, "_bounded_iter", [], [], None, None, lineno=loop.lineno)
        return loop

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        concat = self.generic_visit(node)
        assert isinstance(concat, nodes.Expr)
        return nodes.Filter(concat, "_bounded_value", [], [], None, None, lineno=node.lineno)
