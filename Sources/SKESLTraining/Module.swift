// Module SKESLTraining.
