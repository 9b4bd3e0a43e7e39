"""Built-in inferrers: pure functions of an image (colour palette, aspect ratio, perceptual hash, feature
vector), usable as pipeline stages and callable synchronously over HTTP."""
