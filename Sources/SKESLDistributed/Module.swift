// Module SKESLDistributed.
