"""A meeting bot that brings a voice AI agent into Google Meet, Zoom and Microsoft Teams calls."""

__version__ = "0.1.0"
