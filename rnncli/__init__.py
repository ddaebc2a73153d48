"""rnncli: train, sample and score recurrent language models on a CPU."""


def __getattr__(name: str):
    """`__version__`, read from the installed package's metadata when first asked for: importing
    importlib.metadata takes ~18 ms, and most commands never ask (`--version` and saving a
    checkpoint do)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("rnncli")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+unknown"
    raise AttributeError(f"module 'rnncli' has no attribute {name!r}")
