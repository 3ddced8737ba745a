"""The money: the quota ledger, prices, reservations and their settlement, redemption codes,
the usage log and the invariant's audit."""
