"""Options declared once, as dataclass fields: the flag, its environment variable and its check.

    @dataclass(frozen=True)
    class EncoderSettings(GrpcServerSettings):
        ENV_PREFIX = "CLIPSEARCH_ENCODER_"
        max_wait_ms: float = option(5.0, "how long a batch waits to fill", parse=float_in(0, 10_000))

gives ``--max-wait-ms``, ``$CLIPSEARCH_ENCODER_MAX_WAIT_MS`` and the range check, whether the
value comes from the command line, the environment or ``EncoderSettings(max_wait_ms=...)`` in
code. Standard library only: the ``clipsearch`` command builds every parser before grpc,
torch or faiss is imported (a base install has none of the server extras).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

_OPTION = "clipsearch.option"


class OptionError(ValueError):
    """A bad option value; the message starts with the flag's name."""


@dataclass(frozen=True)
class Option:
    help: str
    #: Turns the command-line (or environment) text into the value; may carry a ``check``.
    parse: Callable[[str], Any] = str
    #: The flag, when not ``--`` + the field name with dashes.
    flag: str | None = None
    #: A flag without a value that sets the opposite of the default (``--insecure``, ``--no-resume``);
    #: its variable takes 1/0, true/false, yes/no, on/off.
    switch: bool = False
    #: Whether ``<ENV_PREFIX><FLAG>`` sets the default.
    env: bool = True


def option(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] = str,
    flag: str | None = None,
    switch: bool = False,
    env: bool = True,
) -> Any:
    """A dataclass field that is also a flag (see the module docstring)."""
    return dataclasses.field(default=default, metadata={_OPTION: Option(help, parse, flag, switch, env)})


class Options:
    """Base of frozen dataclasses declared with :func:`option`: parser, environment, checks."""

    #: Prefix of the environment variables (``CLIPSEARCH_ENCODER_``); None: no variables.
    ENV_PREFIX: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        """Checks every value against its parser's bounds, naming the flag."""
        for field, declared in self.declared_options():
            check = getattr(declared.parse, "check", None)
            value = getattr(self, field.name)
            if check is not None and value is not None:
                problem = check(value)
                if problem:
                    raise OptionError(f"{self.flag_of(field.name)}: {problem}")

    @classmethod
    def declared_options(cls) -> Iterator[tuple[dataclasses.Field, Option]]:
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            declared = field.metadata.get(_OPTION)
            if declared is not None:
                yield field, declared

    @classmethod
    def flag_of(cls, name: str) -> str:
        for field, declared in cls.declared_options():
            if field.name == name:
                return declared.flag or "--" + name.replace("_", "-")
        raise KeyError(name)

    @classmethod
    def env_var(cls, flag: str) -> str | None:
        if cls.ENV_PREFIX is None:
            return None
        return cls.ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per option; defaults from the environment are parsed only if this command runs.

        A bad variable must not break other commands: Kubernetes service links put
        ``CLIPSEARCH_ENCODER_PORT=tcp://10.0.0.5:50051`` in every pod, which is no port, but
        matters only to ``serve encoder`` without ``--port``.
        """
        for field, declared in cls.declared_options():
            flag = cls.flag_of(field.name)
            env = cls.env_var(flag) if declared.env else None
            raw = os.environ.get(env) if env else None
            parse = env_bool if declared.switch else declared.parse
            default = field.default
            if raw is not None:
                default, parse = raw, _naming_env(parse, raw, env or "")
            shown = "off" if default is False else default
            suffix = f"default {shown}" + (f"; env {env}" if env else "")
            text = f"{declared.help} ({suffix})"
            if declared.switch:
                parser.add_argument(
                    flag,
                    dest=field.name,
                    action=_Switch,
                    const=not field.default,
                    default=default,
                    type=parse,
                    help=text,
                )
            else:
                parser.add_argument(
                    flag, dest=field.name, type=parse, default=default, help=text, metavar=_metavar(parse)
                )

    @classmethod
    def from_args(cls, ns: argparse.Namespace, **overrides: Any) -> Any:
        """``cls(**flags)``; a bad value exits with the flag's name (argparse's usage error)."""
        values = {
            field.name: getattr(ns, field.name)
            for field, _ in cls.declared_options()
            if hasattr(ns, field.name)
        }
        try:
            return cls(**{**values, **overrides})
        except OptionError as exc:
            raise SystemExit(f"error: {exc}") from None


class _Switch(argparse.Action):
    """``--flag`` sets ``const``; the default (maybe text from the environment) goes through ``type``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.const)


def _metavar(parse: Callable[[str], Any]) -> str | None:
    return getattr(parse, "metavar", None)


def _naming_env(parse: Callable[[str], Any], raw: str, env: str) -> Callable[[str], Any]:
    """``parse``, whose error names the variable when it is parsing the variable's value."""

    def parse_naming_env(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            if text is raw:
                raise argparse.ArgumentTypeError(f"{exc} (from ${env}={raw!r})") from None
            raise

    parse_naming_env.__name__ = getattr(parse, "__name__", "value")
    return parse_naming_env


# -- parsers: text -> value, each with a `check` of values set in code --------------------------


def env_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


class _Parser:
    """Text -> value (``convert``), then the same ``check`` that values given in code get."""

    metavar: str | None = None

    def __call__(self, text: str) -> Any:
        value = self.convert(text)
        problem = self.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    def convert(self, text: str) -> Any:
        return text

    def check(self, value: Any) -> str | None:
        raise NotImplementedError


class _Bounded(_Parser):
    def __init__(self, cast: Callable[[str], Any], what: str, low: float, high: float):
        self.cast, self.what, self.low, self.high = cast, what, low, high
        self.__name__ = what.split()[-1]
        self.metavar = "N"

    def convert(self, text: str) -> Any:
        try:
            return self.cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.what}, got {text!r}") from None

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {self.what}, got {value!r}"
        if not self.low <= value <= self.high:
            return f"must be in [{self.low:g}, {self.high:g}], got {value}"
        return None


def int_in(low: int, high: int) -> Callable[[str], int]:
    return _Bounded(int, "an integer", low, high)


def float_in(low: float, high: float) -> Callable[[str], float]:
    return _Bounded(float, "a number", low, high)


class _Choice(_Parser):
    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices
        self.__name__ = "choice"
        self.metavar = "{" + ",".join(choices) + "}"

    def check(self, value: Any) -> str | None:
        return None if value in self.choices else f"expected one of {', '.join(self.choices)}, got {value!r}"


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    return _Choice(choices)


class _Matching(_Parser):
    def __init__(self, pattern: str, what: str):
        self.pattern = re.compile(pattern)
        self.what = what
        self.__name__ = "text"

    def check(self, value: Any) -> str | None:
        matched = isinstance(value, str) and self.pattern.fullmatch(value)
        return None if matched else f"expected {self.what}, got {value!r}"


def matching(pattern: str, what: str) -> Callable[[str], str]:
    """Text that must match ``pattern`` entirely; ``what`` describes it in errors."""
    return _Matching(pattern, what)


def optional_text(text: str) -> str | None:
    """Empty text (an empty variable) means unset."""
    return text or None
