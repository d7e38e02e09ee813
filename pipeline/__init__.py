"""Im2Flow data pipeline: each stage is a plain function with a CLI entry in `pipeline.cli`."""

__version__ = "0.1.0"
