// Reads an iCalendar document on stdin and prints its events as JSON, as Mozilla's ical.js
// (the parser Thunderbird uses) reads them: the second, independent parser of the feed.
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const component = new ICAL.Component(ICAL.parse(readFileSync(0, "utf8")));
const events = component.getAllSubcomponents("vevent").map((vevent) => {
  const event = new ICAL.Event(vevent);
  return {
    uid: event.uid,
    sequence: event.sequence,
    status: vevent.getFirstPropertyValue("status"),
    summary: event.summary,
    description: event.description,
    start: event.startDate.toJSDate().toISOString(),
    start_zone: event.startDate.zone.tzid,
    duration: event.duration.toString(),
  };
});
console.log(
  JSON.stringify({
    calname: component.getFirstPropertyValue("x-wr-calname"),
    method: component.getFirstPropertyValue("method"),
    events,
  }),
);
