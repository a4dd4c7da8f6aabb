"""Training is not serving: our small CLIP, the projectors and the data they learn from.

Run by `mmstream train`; no worker imports this package (the workers load what it saved).
"""
