"""EPNAS (Zhou et al.): progressive REINFORCE search under soft resource constraints.

The package: :mod:`~searchers.epnas.searcher` (the ask/tell searcher),
:mod:`~searchers.epnas.policy` (the LSTM policy and its REINFORCE update, needs torch),
:mod:`~searchers.epnas.actions` (the action vocabulary every morpher shares),
:mod:`~searchers.epnas.morphs` (layer-by-layer morphs and the morpher registry),
:mod:`~searchers.epnas.module_space` (module search over the paper's Table 3 space) and
:mod:`~searchers.epnas.cell_morph` (module search over PNAS cells, a named option). Importing
the package does not import torch.
"""

from searchers.epnas.searcher import EPNASSearcher

__all__ = ["EPNASSearcher"]
