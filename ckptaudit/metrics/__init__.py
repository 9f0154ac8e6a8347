"""The metric engine: the metric language (``spec``), vectorised numpy kernels (``kernels``) and
scoring every checkpoint of a run (``evaluation``)."""
