"""The schema: the records every results file holds, their versioned envelope, and one loader for every file kind."""
