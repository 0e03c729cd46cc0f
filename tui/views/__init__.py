"""The console's screens that list and act on work: batches, failed jobs, running jobs, and the
dialogs their actions confirm through. Each module pairs a pure view-model with its widgets."""
