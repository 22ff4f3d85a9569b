"""Hyper-parameter search on Optuna (the optional ``tune`` extra): the search space over recipe
paths and its validation, studies with pruning, resumable storage and many workers, the study
report, and the paired comparison of two tuned recipes.
"""
