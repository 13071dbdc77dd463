"""voicestate's benchmark suite: each figure of DESIGN.md's "Budgets" the core can measure,
against its floor measured in the same run. Entry point: ``python benchmarks/run.py``.
"""
