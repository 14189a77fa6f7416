"""The registered dataset sources, one file each (``data.name`` picks one).

A new dataset is one file here: a :class:`ms_suite.data.source.Source` subclass decorated with
``@DATASETS.register("name")``; the registry imports this package's modules on first lookup.
"""
