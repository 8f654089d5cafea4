"""The package's version, from its metadata (meson.build's project()), read
when asked: importlib.metadata costs startup time every run. A leaf of its
own so that any layer may ask without importing the package's top."""


def version() -> str:
    from importlib.metadata import version as of
    return of("uringwatch")
