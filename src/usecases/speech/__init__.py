"""Speech recognition groundwork: audio loading, quality flags and corpus layout readers."""
