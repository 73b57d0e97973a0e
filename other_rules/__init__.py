"""learnrules.other_rules."""

__all__: list[str] = []
