"""Differential privacy: noise, update clipping, the RDP accountant and the plan's ``privacy`` section.

Submodules are imported where used; ``fx_cli.privacy.settings`` stays free of numpy so plan validation
does not pay for it.
"""
