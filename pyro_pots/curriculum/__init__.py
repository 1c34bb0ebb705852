"""The curriculum: a stage manager that opens pots one at a time and decides when to stop."""

from pyro_pots.curriculum.stage_manager import PARENT_RULES, Decision, StageManager

__all__ = ["Decision", "PARENT_RULES", "StageManager"]
