"""The plugin machinery: hook specifications, the plugin manager that walks the built-ins and
loads entry points, the registries it fills, slot unions and the component listing.
"""
