"""The Jinja templates caffegen renders (data, not code): shipped inside the package as ``caffegen.templates``
(see pyproject.toml), read through importlib.resources."""
