"""The base layer: what every other layer may use, importing nothing else of binsr.

    files       atomic writes, the one way the package writes a file; folders and run folders (a lock per run)
    intervals   Interval: the numbers a setting accepts, shared by the model and training settings
    device      the torch device a command runs on ("auto" resolved; a bad name is a one-line error)

Imports: the standard library and torch only.
"""
