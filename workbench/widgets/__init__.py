"""Widgets drawn for NAS runs: architecture graphs, the PONAS heatmap, curves, Pareto plots.

``plots`` imports textual-plotext (plotext); import it only where a plot is shown.
"""
