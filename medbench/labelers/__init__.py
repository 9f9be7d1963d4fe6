"""Report labelers: report text -> {observation: 1 positive, 0 negative, -1 uncertain}; absent = blank."""
