"""Small helpers every layer of ssmgen may use: atomic output files, progress lines. Like
``ssmgen.spec``, this package imports nothing else of ssmgen."""
