"""The owner directory: who owns steps, how to reach them, the calendar they work by."""
