"""Built-in inferrers: pure functions of an image (colour palette, aspect ratio, perceptual hash, feature
vector) or of other raw data they declare they accept (array and table statistics), usable as pipeline
stages and callable synchronously over HTTP."""
