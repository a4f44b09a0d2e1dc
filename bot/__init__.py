"""A meeting bot that brings a voice AI agent into Google Meet and Zoom calls."""

__version__ = "0.1.0"
