"""The contracts every plugin implements.

``configs``: the frozen pydantic config classes a recipe holds and the :class:`BuildContext`
their ``build`` receives; ``runtime``: the modules they build (encoders, augmentations, heads);
``step``: the :class:`Batch` and :class:`Step` a head or augmentation sees; ``readers``: the
data-reader contract. Plugin authors import these through :mod:`eclsr.api`.
"""
