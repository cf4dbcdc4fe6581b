"""Training of the demo CLIP model (`clipsearch-demo`) on the procedurally rendered catalog.

Kept apart from the serving code the way open_clip keeps `open_clip_train` apart from
`open_clip`: the encoder service never imports this package.
"""
