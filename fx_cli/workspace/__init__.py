"""Workspaces: creation from templates, export and import archives."""
