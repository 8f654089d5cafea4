"""A msgspec Struct that also reads like the dict it replaced, for code
written against that dict: `s["key"]`, `.get()`, `.keys()`, `.items()`,
`in`, and `==` with a dict, all as its JSON has it (a field left out of
the JSON, omit_defaults, is no key)."""

from __future__ import annotations

from typing import Iterator

import msgspec


class DictLike(msgspec.Struct):
    """A Struct that also reads like the dict it replaces (read-only)."""

    def keys(self) -> tuple[str, ...]:
        if self.__struct_config__.omit_defaults:
            return tuple(msgspec.to_builtins(self))
        return self.__struct_fields__

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self.keys() else default

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def items(self) -> Iterator[tuple[str, object]]:
        return ((k, getattr(self, k)) for k in self.keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):     # as the dict it replaces compared
            return msgspec.to_builtins(self) == other
        return msgspec.structs.astuple(self) == msgspec.structs.astuple(other) \
            if type(other) is type(self) else NotImplemented

    __hash__ = None     # as the dicts were
