"""The ``ms-suite`` command line: wires config, runtime, data, models and engine together."""
