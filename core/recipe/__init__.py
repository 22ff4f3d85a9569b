"""Recipes: reading TOML/YAML with ``--set`` overrides, the core sections (train, eval, top
level), the schema built over the registries, and error messages located in the file.
"""
