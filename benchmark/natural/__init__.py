"""Natural-text tasks: a needle-in-a-haystack in Gutenberg prose (``niah``) and multi-document QA on
Natural Questions (``multidoc``), with fixed validation/test splits (``splits``)."""
