"""learnrules.data."""

__all__: list[str] = []
