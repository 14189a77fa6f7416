"""The model zoo: one file or folder per family, each registering its models with
``@register_model`` (:mod:`ms_suite.models.registry`). :data:`ms_suite.registry.MODELS` imports every
family here on its first lookup, so a new family is a new file and nothing else."""
