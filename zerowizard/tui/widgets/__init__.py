"""Widgets: they render what the screen hands them and post messages; they compute nothing."""
