"""The checkpoint projector: folds every appended event into its job's checkpoint in a KV bucket."""
