"""Screens: the plan editor, the run monitor and small dialogs."""
