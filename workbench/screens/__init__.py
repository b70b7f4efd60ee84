"""The workbench's screens: runs list, new run, run detail (tabs), help and confirmations.

Each module is imported when its screen is first opened, so start-up pays only for the runs
list.
"""
