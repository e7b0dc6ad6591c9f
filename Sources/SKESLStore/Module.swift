// Module SKESLStore.
