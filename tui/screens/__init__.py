"""Screens: the main explorer, the questions browser, help and small prompts."""
