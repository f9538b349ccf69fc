"""Views: the thin layer that draws models (matplotlib) and makes them explorable (ipywidgets).

Models never import anything from here. Importing this package imports nothing heavy;
each view module imports ipywidgets or matplotlib itself, and matplotlib only when a
figure is actually converted.
"""
