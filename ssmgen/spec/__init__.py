"""What a model *is*, independent of how it is computed or built: config parsing and validation
(a layer or a whole network), fixed-point formats, weights files, the quantized model types, the
model hash and the board-link protocol. This package imports nothing else of ssmgen; everything
else imports it (``tests/test_architecture.py`` checks both)."""
