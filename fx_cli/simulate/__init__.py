"""``fx simulate``: a whole federation on one machine (or a Ray cluster), on the round engine of real runs.

``run`` (driver and dispatcher), ``worker`` (one worker's turns), ``pool`` (process workers), ``raypool``
(Ray actors, imported only for ``--backend ray``), ``partition`` (splitting data N ways and the loader
hook), ``settings`` (the plan's ``simulation`` section). Importing this package is cheap.
"""
