# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # More classes, imbalance and depth (Appendix G)
#
# This chapter is being written.

# %% tags=["parameters"]
profile = "quick"
