"""Configuration: `defaults` (every setting and its default; configs/*.py start from it), `keys`
(the settings' names, comments and the keys a resume may change), `validation` (one-line errors for
bad files, keys and values; comparison on resume) and `precision` (the `compute` section as JAX
objects)."""
