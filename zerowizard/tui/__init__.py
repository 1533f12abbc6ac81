"""The interactive wizard (Textual): a thin layer over the core and the runner's event stream.

Only this package imports textual; the core never does.
"""
