"""Synthetic weight-bearing CBCT studies of the whole spine with exact ground truth.

The test bed of every other part of wbspine. Importable without torch.
"""

from appliance.phantom.generate import Study, generate_study, write_study
from appliance.phantom.params import GRIDS, PhantomParams, draw_params

__all__ = ["GRIDS", "PhantomParams", "Study", "draw_params", "generate_study", "write_study"]
