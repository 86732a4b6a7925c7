"""Private iCalendar feeds of an owner's steps, for their calendar to subscribe to."""
