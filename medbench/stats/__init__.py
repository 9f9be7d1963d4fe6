"""Statistics on per-sample sufficient statistics: patient bootstrap CIs and paired tests."""
