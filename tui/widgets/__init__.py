"""Widgets of the explorer, one region of the main screen per module."""
