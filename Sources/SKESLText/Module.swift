// Module SKESLText.
